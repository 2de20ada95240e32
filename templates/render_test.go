package templates_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// loadSpec validates and defaults a manifest like the operator's render command does.
func loadSpec(t testing.TB, data []byte) (*v1alpha1.PodSecurityConstraints, error) {
	t.Helper()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	psc, errs := v.DefaultAndValidate(context.Background(), obj)
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return psc, nil
}

func TestRenderGolden(t *testing.T) {
	for _, name := range []string{"full", "minimal", "restricted"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "config", "samples", "policy_v1alpha1_podsecurityconstraints_"+name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			psc, err := loadSpec(t, data)
			if err != nil {
				t.Fatalf("sample is invalid: %v", err)
			}
			rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			got, err := templates.MarshalYAMLStream(templates.Objects(rendered))
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./templates/ -run TestRenderGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("render output differs from %s; if intended, rerun with -update and review the diff", golden)
			}
			// Same input, same bytes.
			again, _ := templates.Render(&psc.Spec, templates.DefaultOptions())
			again2, _ := templates.MarshalYAMLStream(templates.Objects(again))
			if !bytes.Equal(got, again2) {
				t.Error("rendering is not deterministic")
			}
		})
	}
}

func TestRenderShape(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "config", "samples", "policy_v1alpha1_podsecurityconstraints_full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	psc, err := loadSpec(t, data)
	if err != nil {
		t.Fatal(err)
	}
	psc.Spec.ExemptImages = []v1alpha1.ImagePattern{"registry.example.com/debug/*"}
	psc.Spec.Capabilities.ExemptImages = []v1alpha1.ImagePattern{"falco"}
	psc.Spec.Capabilities.ExcludedNamespaces = []v1alpha1.NamespacePattern{"monitoring-*"}
	psc.Spec.Capabilities.EnforcementAction = v1alpha1.EnforcementWarn
	rendered, err := templates.Render(&psc.Spec, templates.Options{OperatorNamespace: "ops", GatekeeperNamespace: "gk"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rendered) != len(templates.Features()) {
		t.Fatalf("rendered %d features, want all %d", len(rendered), len(templates.Features()))
	}
	objs := templates.Objects(rendered)
	for i, o := range objs {
		wantTemplate := i < len(rendered)
		if (o.GetKind() == "ConstraintTemplate") != wantTemplate {
			t.Errorf("object %d is %s: templates must all come before constraints", i, o.GetKind())
		}
		if o.GetLabels()[templates.LabelManagedBy] != templates.ManagedByValue || o.GetLabels()[templates.LabelFeature] == "" {
			t.Errorf("%s %s lacks our labels: %v", o.GetKind(), o.GetName(), o.GetLabels())
		}
	}
	for _, r := range rendered {
		spec := r.Constraint.Object["spec"].(map[string]interface{})
		match := spec["match"].(map[string]interface{})
		excluded := match["excludedNamespaces"].([]interface{})
		params := spec["parameters"].(map[string]interface{})
		switch r.Feature.Name {
		case "capabilities":
			if spec["enforcementAction"] != "warn" {
				t.Errorf("capabilities action %v, want the feature's warn", spec["enforcementAction"])
			}
			if got := strings.Trim(strings.Join(toStrings(excluded), ","), ","); got != "kube-system,monitoring-*,ops,gk" {
				t.Errorf("capabilities excluded namespaces %s", got)
			}
			if got := strings.Join(toStrings(params["exemptImages"].([]interface{})), ","); got != "registry.example.com/debug/*,falco" {
				t.Errorf("capabilities exempt images %s", got)
			}
			for _, k := range []string{"enabled", "enforcementAction", "excludedNamespaces"} {
				if _, ok := params[k]; ok {
					t.Errorf("parameter %s leaked into the constraint", k)
				}
			}
		case "hostNamespaces":
			if spec["enforcementAction"] != "deny" {
				t.Errorf("hostNamespaces action %v, want the global deny", spec["enforcementAction"])
			}
			if _, ok := params["exemptImages"]; ok {
				t.Error("pod-level feature got exemptImages")
			}
		}
	}

	off := false
	psc.Spec.Enabled = &off
	if rendered, _ := templates.Render(&psc.Spec, templates.DefaultOptions()); len(rendered) != 0 {
		t.Errorf("master switch off rendered %d features", len(rendered))
	}
}

func toStrings(in []interface{}) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i], _ = v.(string)
	}
	return out
}

// FuzzRender: any CR that passes validation renders templates that compile and constraints
// the framework accepts.
func FuzzRender(f *testing.F) {
	for _, name := range []string{"full", "minimal", "restricted"} {
		data, err := os.ReadFile(filepath.Join("..", "config", "samples", "policy_v1alpha1_podsecurityconstraints_"+name+".yaml"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("apiVersion: policy.podsecurity.dev/v1alpha1\nkind: PodSecurityConstraints\nmetadata: {name: cluster}\nspec: {sysctls: {enabled: true, forbiddenSysctls: ['*']}, hostFilesystem: {enabled: true}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		psc, err := loadSpec(t, data)
		if err != nil || psc == nil {
			return // invalid input is rejected before rendering, which is the point
		}
		rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
		if err != nil {
			t.Fatalf("valid spec failed to render: %v", err)
		}
		if _, err := policytest.New(context.Background(), templates.Objects(rendered)); err != nil {
			t.Fatalf("valid spec rendered objects the engine rejects: %v\nspec: %s", err, data)
		}
	})
}

// TestTemplatesHaveBothEngines: every template carries K8sNativeValidation code first (the
// engine Gatekeeper prefers) with the shared library, the one validation, failurePolicy Fail
// and generateVAP false, then the Rego with its library.
func TestTemplatesHaveBothEngines(t *testing.T) {
	for _, f := range templates.Features() {
		t.Run(f.Name, func(t *testing.T) {
			u, err := f.Template()
			if err != nil {
				t.Fatal(err)
			}
			targets, _, _ := unstructured.NestedSlice(u.Object, "spec", "targets")
			if len(targets) != 1 {
				t.Fatalf("want one target, got %d", len(targets))
			}
			code, _, _ := unstructured.NestedSlice(targets[0].(map[string]interface{}), "code")
			var engines []string
			for _, c := range code {
				engines = append(engines, c.(map[string]interface{})["engine"].(string))
			}
			if strings.Join(engines, ",") != templates.EngineCEL+","+templates.EngineRego {
				t.Fatalf("code engines %v, want [%s %s]", engines, templates.EngineCEL, templates.EngineRego)
			}
			cel := code[0].(map[string]interface{})
			if fp, _, _ := unstructured.NestedString(cel, "source", "failurePolicy"); fp != "Fail" {
				t.Errorf("failurePolicy %q, want Fail", fp)
			}
			if vap, found, _ := unstructured.NestedBool(cel, "source", "generateVAP"); !found || vap {
				t.Errorf("generateVAP must be set to false (found %v, value %v)", found, vap)
			}
			vars, _, _ := unstructured.NestedSlice(cel, "source", "variables")
			names := map[string]bool{}
			for _, v := range vars {
				name := v.(map[string]interface{})["name"].(string)
				if names[name] {
					t.Errorf("variable %s is defined twice (a template must not redefine a library variable)", name)
				}
				names[name] = true
				expr := v.(map[string]interface{})["expression"].(string)
				if strings.TrimSpace(expr) == "" {
					t.Errorf("variable %s has no expression", name)
				}
			}
			for _, lib := range []string{"isPodUpdate", "checkedContainers", "podFieldsChecked", "violations"} {
				if !names[lib] {
					t.Errorf("variable %s is missing", lib)
				}
			}
			validations, _, _ := unstructured.NestedSlice(cel, "source", "validations")
			if len(validations) != 1 {
				t.Fatalf("want one validation, got %d", len(validations))
			}
			msg, _, _ := unstructured.NestedString(validations[0].(map[string]interface{}), "messageExpression")
			if msg == "" || strings.Contains(msg, "\n") {
				t.Errorf("messageExpression %q must be set and hold no newline", msg)
			}
		})
	}
}
