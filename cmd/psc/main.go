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
	"flag"
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

// fileCommand is a command that reads one manifest (-f FILE, - for standard input), turns it
// into another and prints it. A usage error exits 2; unreadable or invalid input gets
// "error: ..." on standard error and exit code 1.
type fileCommand struct {
	name, usage, file string
	// flags adds the command's own flags besides -f.
	flags func(*flag.FlagSet)
	run   func(data []byte) ([]byte, error)
}

func (c fileCommand) main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", c.file)
	if c.flags != nil {
		c.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintln(stderr, c.usage)
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
	out, err := c.run(data)
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

func readInput(file string, stdin io.Reader) ([]byte, error) {
	if file == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return data, nil
}
