package main

import (
	"context"
	"io"

	"github.com/podsecurity/psc-operator/pspconvert"
)

// runConvertPSP implements `psc convert-psp -f psp.yaml`: it prints the
// PodSecurityConstraints equivalent of one or more PodSecurityPolicy documents, with a comment
// on everything that cannot be expressed. Unreadable or non-PSP input gets a message on
// standard error and exit code 1; a usage error exit code 2.
func runConvertPSP(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return fileCommand{
		name:  "convert-psp",
		usage: "Usage: psc convert-psp -f FILE\n\nPrints the PodSecurityConstraints equivalent of policy/v1beta1 PodSecurityPolicy objects.",
		file:  "PodSecurityPolicy manifest (one or more documents); - reads standard input",
		run: func(data []byte) ([]byte, error) {
			return pspconvert.Convert(ctx, data)
		},
	}.main(args, stdin, stdout, stderr)
}
