package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/podsecurity/psc-operator/pspconvert"
)

// runConvertPSP implements `psc convert-psp -f psp.yaml`: it prints the
// PodSecurityConstraints equivalent of one or more PodSecurityPolicy documents, with a comment
// on everything that cannot be expressed. Unreadable or non-PSP input gets a message on
// standard error and exit code 1; a usage error exit code 2.
func runConvertPSP(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("convert-psp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "PodSecurityPolicy manifest (one or more documents); - reads standard input")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: psc convert-psp -f FILE\n\nPrints the PodSecurityConstraints equivalent of policy/v1beta1 PodSecurityPolicy objects.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	data, err := readInput(*file, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	out, err := pspconvert.Convert(ctx, data)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "error: writing output: %v\n", err)
		return 1
	}
	return 0
}
