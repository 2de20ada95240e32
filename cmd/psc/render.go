package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/templates"
)

// runRender implements `psc render -f cr.yaml`: it prints the objects the operator would
// apply for a PodSecurityConstraints object, as a multi-document YAML stream. A CR that fails
// validation gets the validation messages and exit code 1; a usage error exit code 2.
func runRender(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts := templates.DefaultOptions()
	return fileCommand{
		name:  "render",
		usage: "Usage: psc render -f FILE [flags]\n\nPrints the Gatekeeper objects the operator would apply for a PodSecurityConstraints manifest.",
		file:  "PodSecurityConstraints manifest to render; - reads standard input",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&opts.OperatorNamespace, "operator-namespace", opts.OperatorNamespace, "namespace the operator runs in (always excluded)")
			fs.StringVar(&opts.GatekeeperNamespace, "gatekeeper-namespace", opts.GatekeeperNamespace, "namespace Gatekeeper runs in (always excluded)")
			fs.StringVar(&opts.ProbeNamespace, "admission-probe-namespace", opts.ProbeNamespace, "the admission probe's namespace (excluded with validatingAdmissionPolicy.enabled)")
		},
		run: func(data []byte) ([]byte, error) {
			return renderManifest(ctx, data, opts)
		},
	}.main(args, stdin, stdout, stderr)
}

// renderManifest validates, defaults and renders one PodSecurityConstraints manifest.
func renderManifest(ctx context.Context, data []byte, opts templates.Options) ([]byte, error) {
	obj := map[string]interface{}{}
	if err := yaml.UnmarshalStrict(data, &obj); err != nil {
		return nil, fmt.Errorf("parsing manifest: %w", err)
	}
	if obj["apiVersion"] != "policy.podsecurity.dev/v1alpha1" || obj["kind"] != "PodSecurityConstraints" {
		return nil, fmt.Errorf("manifest must be a policy.podsecurity.dev/v1alpha1 PodSecurityConstraints, found %v %v", obj["apiVersion"], obj["kind"])
	}
	v, err := validation.New()
	if err != nil {
		return nil, err
	}
	psc, errs := v.DefaultAndValidate(ctx, obj)
	if len(errs) > 0 {
		var b bytes.Buffer
		fmt.Fprintf(&b, "the PodSecurityConstraints is invalid:")
		for _, e := range errs {
			fmt.Fprintf(&b, "\n  * %s", e.Error())
		}
		return nil, fmt.Errorf("%s", b.String())
	}
	rendered, err := templates.Render(&psc.Spec, opts)
	if err != nil {
		return nil, err
	}
	return templates.MarshalYAMLStream(rendered.Objects())
}
