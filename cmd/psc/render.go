package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/templates"
)

// runRender implements `psc render -f cr.yaml`: it prints the objects the operator would
// apply for a PodSecurityConstraints object, as a multi-document YAML stream. A CR that fails
// validation gets the validation messages and exit code 1; a usage error exit code 2.
func runRender(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "PodSecurityConstraints manifest to render; - reads standard input")
	opts := templates.DefaultOptions()
	fs.StringVar(&opts.OperatorNamespace, "operator-namespace", opts.OperatorNamespace, "namespace the operator runs in (always excluded)")
	fs.StringVar(&opts.GatekeeperNamespace, "gatekeeper-namespace", opts.GatekeeperNamespace, "namespace Gatekeeper runs in (always excluded)")
	fs.StringVar(&opts.ProbeNamespace, "admission-probe-namespace", opts.ProbeNamespace, "the admission probe's namespace (excluded with validatingAdmissionPolicy.enabled)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: psc render -f FILE [flags]\n\nPrints the Gatekeeper objects the operator would apply for a PodSecurityConstraints manifest.")
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
	out, err := renderManifest(ctx, data, opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
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

// renderManifest validates, defaults and renders one PodSecurityConstraints manifest.
func renderManifest(ctx context.Context, data []byte, opts templates.Options) ([]byte, error) {
	obj := map[string]interface{}{}
	if err := yaml.UnmarshalStrict(data, &obj); err != nil {
		return nil, fmt.Errorf("error: parsing manifest: %w", err)
	}
	if obj["apiVersion"] != "policy.podsecurity.dev/v1alpha1" || obj["kind"] != "PodSecurityConstraints" {
		return nil, fmt.Errorf("error: manifest must be a policy.podsecurity.dev/v1alpha1 PodSecurityConstraints, found %v %v", obj["apiVersion"], obj["kind"])
	}
	v, err := validation.New()
	if err != nil {
		return nil, fmt.Errorf("error: %w", err)
	}
	psc, errs := v.DefaultAndValidate(ctx, obj)
	if len(errs) > 0 {
		var b bytes.Buffer
		fmt.Fprintf(&b, "error: the PodSecurityConstraints is invalid:")
		for _, e := range errs {
			fmt.Fprintf(&b, "\n  * %s", e.Error())
		}
		return nil, fmt.Errorf("%s", b.String())
	}
	rendered, err := templates.Render(&psc.Spec, opts)
	if err != nil {
		return nil, fmt.Errorf("error: %w", err)
	}
	return templates.MarshalYAMLStream(rendered.Objects())
}
