// Command psc is psc-operator's offline command line: it renders a PodSecurityConstraints
// manifest into the Gatekeeper objects the operator would apply (`psc render -f cr.yaml`),
// validated and defaulted with the CRD's own rules in process, and converts PodSecurityPolicy
// objects into a PodSecurityConstraints (`psc convert-psp -f psp.yaml`).
//
// These commands live outside the manager binary: the in-process validation links the API
// server's CEL stack, which the running operator does not need (it has the CR validated by
// the API server) and which cost it about 10 MiB of resident memory.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

const usage = `Usage: psc COMMAND [flags]

Commands:
  render -f FILE       print the Gatekeeper objects the operator would apply for a PodSecurityConstraints manifest
  convert-psp -f FILE  print the PodSecurityConstraints equivalent of policy/v1beta1 PodSecurityPolicy objects

FILE - reads standard input. "psc COMMAND -h" lists a command's flags.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "render":
		return runRender(ctx, args[1:], stdin, stdout, stderr)
	case "convert-psp":
		return runConvertPSP(ctx, args[1:], stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
