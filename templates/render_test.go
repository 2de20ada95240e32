package templates_test

import (
	"bytes"
	"context"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
			got, err := templates.MarshalYAMLStream(rendered.Objects())
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
			again2, _ := templates.MarshalYAMLStream(again.Objects())
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
	n := len(templates.Features())
	if got := len(rendered.Features()); got != n {
		t.Fatalf("rendered %d features, want all %d", got, n)
	}
	// Apply order: the policy template, its constraints (capabilities has excludedNamespaces of
	// its own: a constraint of its own; every other feature follows the spec's deny), then the
	// objects of no single feature.
	wantRoles := []templates.Role{templates.RoleTemplate, templates.RoleConstraint, templates.RoleConstraint}
	for range templates.WorkloadKinds(&psc.Spec) {
		wantRoles = append(wantRoles, templates.RoleExpansion)
	}
	if len(rendered) != len(wantRoles) {
		t.Fatalf("rendered %d objects, want %d", len(rendered), len(wantRoles))
	}
	for i, it := range rendered {
		o := it.Object
		if it.Role != wantRoles[i] {
			t.Errorf("object %d (%s %s) has role %s, want %s", i, o.GetKind(), o.GetName(), it.Role, wantRoles[i])
		}
		if o.GetLabels()[templates.LabelManagedBy] != templates.ManagedByValue {
			t.Errorf("%s %s lacks our managed-by label: %v", o.GetKind(), o.GetName(), o.GetLabels())
		}
		policy := it.Role == templates.RoleTemplate || it.Role == templates.RoleConstraint
		if it.Feature != "" || (len(it.Features) > 0) != policy || o.GetLabels()[templates.LabelFeature] != "" ||
			(o.GetLabels()[templates.LabelComponent] == templates.ComponentPolicy) != policy {
			t.Errorf("%s %s: features %q, labels %v", o.GetKind(), o.GetName(), it.Features, o.GetLabels())
		}
		if _, fixed := templates.ManagedKindOf(o.GroupVersionKind()); !fixed && it.Role != templates.RoleConstraint {
			t.Errorf("%s %s is of a kind pruning does not list", o.GetKind(), o.GetName())
		}
	}
	if got := rendered.Items(templates.RoleTemplate)[0].Features; len(got) != n {
		t.Errorf("the template serves %v, want every feature", got)
	}
	cons := rendered.Items(templates.RoleConstraint)
	if cons[0].Object.GetName() != "psc-deny" || len(cons[0].Features) != n-1 || slices.Contains(cons[0].Features, "capabilities") ||
		cons[1].Object.GetName() != "psc-capabilities" || !slices.Equal(cons[1].Features, []string{"capabilities"}) {
		t.Errorf("constraints %s %v and %s %v, want psc-deny with every feature but capabilities, and psc-capabilities",
			cons[0].Object.GetName(), cons[0].Features, cons[1].Object.GetName(), cons[1].Features)
	}
	for _, c := range cons {
		if c.Object.GetKind() != templates.PolicyKind {
			t.Errorf("constraint %s is a %s, want %s", c.Object.GetName(), c.Object.GetKind(), templates.PolicyKind)
		}
		params, _, _ := unstructured.NestedMap(c.Object.Object, "spec", "parameters")
		if got := strings.Join(toStrings(params["exemptImages"].([]interface{})), ","); got != "registry.example.com/debug/*" {
			t.Errorf("%s: constraint exempt images %s, want spec.exemptImages", c.Object.GetName(), got)
		}
		features, _ := params["features"].(map[string]interface{})
		if len(features) != len(c.Features) {
			t.Errorf("%s: parameters name %d features, the inventory %d", c.Object.GetName(), len(features), len(c.Features))
		}
		for _, f := range c.Features {
			if _, ok := features[f].(map[string]interface{}); !ok {
				t.Errorf("%s: no parameters for feature %s", c.Object.GetName(), f)
			}
		}
	}
	for _, feature := range rendered.Features() {
		con, ok := rendered.Find(templates.RoleConstraint, feature)
		if !ok {
			t.Fatalf("no constraint for %s", feature)
		}
		spec := con.Object["spec"].(map[string]interface{})
		match := spec["match"].(map[string]interface{})
		excluded := match["excludedNamespaces"].([]interface{})
		params, _, _ := unstructured.NestedMap(con.Object, "spec", "parameters", "features", feature)
		switch feature {
		case "capabilities":
			if a := templates.ConstraintAction(con); a != "warn" {
				t.Errorf("capabilities action %v, want the feature's warn", a)
			}
			if got := strings.Trim(strings.Join(toStrings(excluded), ","), ","); got != "kube-system,monitoring-*,ops,gk" {
				t.Errorf("capabilities excluded namespaces %s", got)
			}
			if got := strings.Join(toStrings(params["exemptImages"].([]interface{})), ","); got != "registry.example.com/debug/*,falco" {
				t.Errorf("capabilities exempt images %s", got)
			}
			for _, k := range []string{"enabled", "enforcementAction", "excludedNamespaces", "setDefaults"} {
				if _, ok := params[k]; ok {
					t.Errorf("parameter %s leaked into the constraint", k)
				}
			}
		case "hostNamespaces", "privilegedContainers":
			if a := templates.ConstraintAction(con); a != "deny" {
				t.Errorf("%s action %v, want the global deny", feature, a)
			}
			if _, ok := params["exemptImages"]; ok {
				t.Errorf("%s: a feature without exemptImages of its own got them in its parameters", feature)
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
		if _, err := policytest.New(context.Background(), rendered.Objects(templates.RoleTemplate, templates.RoleConstraint)); err != nil {
			t.Fatalf("valid spec rendered objects the engine rejects: %v\nspec: %s", err, data)
		}
	})
}

// TestRenderWorkloads: one ExpansionTemplate per workload kind, each expanding into a Pod from
// the kind's template path; the workloads' action only when set; none when workloads are off
// or no feature is on.
func TestRenderWorkloads(t *testing.T) {
	render := func(spec string) templates.Inventory {
		t.Helper()
		psc, err := loadSpec(t, []byte("apiVersion: policy.podsecurity.dev/v1alpha1\nkind: PodSecurityConstraints\nmetadata: {name: cluster}\nspec: "+spec+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		inv, err := templates.Render(&psc.Spec, templates.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	type want struct{ applyTo, source, action string }
	expansions := func(inv templates.Inventory) map[string]want {
		out := map[string]want{}
		for _, o := range inv.Objects(templates.RoleExpansion) {
			if o.GroupVersionKind() != templates.ExpansionGVK {
				t.Errorf("%s has GVK %s", o.GetName(), o.GroupVersionKind())
			}
			spec := o.Object["spec"].(map[string]interface{})
			at := spec["applyTo"].([]interface{})[0].(map[string]interface{})
			gen := spec["generatedGVK"].(map[string]interface{})
			if gen["group"] != "" || gen["version"] != "v1" || gen["kind"] != "Pod" {
				t.Errorf("%s generates %v, want v1 Pod", o.GetName(), gen)
			}
			action, _ := spec["enforcementAction"].(string)
			out[o.GetName()] = want{
				applyTo: strings.Join([]string{toStrings(at["groups"].([]interface{}))[0], toStrings(at["versions"].([]interface{}))[0], toStrings(at["kinds"].([]interface{}))[0]}, "/"),
				source:  spec["templateSource"].(string),
				action:  action,
			}
		}
		return out
	}

	got := expansions(render(`{privilegedContainers: {enabled: true}}`))
	wantDefault := map[string]want{
		"psc-deployment":            {"apps/v1/Deployment", "spec.template", ""},
		"psc-replicaset":            {"apps/v1/ReplicaSet", "spec.template", ""},
		"psc-statefulset":           {"apps/v1/StatefulSet", "spec.template", ""},
		"psc-daemonset":             {"apps/v1/DaemonSet", "spec.template", ""},
		"psc-job":                   {"batch/v1/Job", "spec.template", ""},
		"psc-cronjob":               {"batch/v1/CronJob", "spec.jobTemplate.spec.template", ""},
		"psc-replicationcontroller": {"/v1/ReplicationController", "spec.template", ""},
	}
	if !maps.Equal(got, wantDefault) {
		t.Errorf("default expansions:\n got %v\nwant %v", got, wantDefault)
	}

	got = expansions(render(`{privilegedContainers: {enabled: true}, workloads: {enforcementAction: warn, extraKinds: [{group: argoproj.io, version: v1alpha1, kind: Rollout, templatePath: spec.template}]}}`))
	if len(got) != len(wantDefault)+1 {
		t.Errorf("got %d expansions, want %d", len(got), len(wantDefault)+1)
	}
	if w := got["psc-rollout.argoproj.io"]; w != (want{"argoproj.io/v1alpha1/Rollout", "spec.template", "warn"}) {
		t.Errorf("extra kind expansion %+v", w)
	}
	if w := got["psc-deployment"]; w.action != "warn" {
		t.Errorf("workloads action not applied to built-ins: %+v", w)
	}

	for _, spec := range []string{
		`{privilegedContainers: {enabled: true}, workloads: {enabled: false}}`,
		`{workloads: {enabled: true}}`,
		`{enabled: false, privilegedContainers: {enabled: true}}`,
	} {
		if got := render(spec).Objects(templates.RoleExpansion); len(got) != 0 {
			t.Errorf("%s rendered %d expansion templates, want none", spec, len(got))
		}
	}
}

func TestExpansionNames(t *testing.T) {
	long := templates.WorkloadKind{GVK: schema.GroupVersionKind{Group: "workloads.very-long-group-name.example.com", Version: "v1", Kind: "ExtraordinarilyLongRunner"}}
	other := long
	other.GVK.Group = "workloads.very-long-group-name.example.org"
	for _, w := range []templates.WorkloadKind{long, other} {
		if n := w.ExpansionName(); len(n) > 63 || !strings.HasPrefix(n, "psc-extraordinarilylongrunner") {
			t.Errorf("name %q: want at most 63 characters starting with the kind", n)
		}
	}
	if long.ExpansionName() == other.ExpansionName() {
		t.Errorf("two kinds got the same name %s", long.ExpansionName())
	}
	core := templates.WorkloadKind{GVK: schema.GroupVersionKind{Version: "v1", Kind: "PodTemplate"}}
	if n := core.ExpansionName(); n != "psc-podtemplate.core" {
		t.Errorf("core extra kind named %q", n)
	}
}

// TestTemplatesHaveBothEngines: the policy template carries K8sNativeValidation code first (the
// engine Gatekeeper prefers) with the shared library, one validation per feature,
// failurePolicy Fail and generateVAP false, then the Rego entry point with the shared library
// and one library per feature.
func TestTemplatesHaveBothEngines(t *testing.T) {
	u, err := templates.PolicyTemplate()
	if err != nil {
		t.Fatal(err)
	}
	if u.GetName() != templates.PolicyTemplateName || u.GetLabels()[templates.LabelManagedBy] != templates.ManagedByValue {
		t.Errorf("template %s labels %v", u.GetName(), u.GetLabels())
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
			t.Errorf("variable %s is defined twice", name)
		}
		names[name] = true
		expr := v.(map[string]interface{})["expression"].(string)
		if strings.TrimSpace(expr) == "" {
			t.Errorf("variable %s has no expression", name)
		}
	}
	for _, lib := range []string{"isPodUpdate", "checkedContainers", "podFieldsChecked"} {
		if !names[lib] {
			t.Errorf("variable %s is missing", lib)
		}
	}
	validations, _, _ := unstructured.NestedSlice(cel, "source", "validations")
	if len(validations) != len(templates.Features()) {
		t.Fatalf("want one validation per feature (%d), got %d", len(templates.Features()), len(validations))
	}
	exprs := map[string]string{}
	for _, v := range vars {
		exprs[v.(map[string]interface{})["name"].(string)] = v.(map[string]interface{})["expression"].(string)
	}
	for i, f := range templates.Features() {
		// Each feature's messages, none unless the constraint names the feature.
		if gate := "!variables.parameters.?features.?" + f.Name + ".hasValue() ? [] : "; !strings.HasPrefix(exprs[f.Name+"_violations"], gate) {
			t.Errorf("variable %s_violations must start with %q", f.Name, gate)
		}
		// Its validation tests violating, which formats nothing; only the message builds messages.
		if v := exprs[f.Name+"_violating"]; !strings.HasPrefix(v, "variables.parameters.?features.?"+f.Name+".hasValue() && ") || strings.Contains(v, ".format(") {
			t.Errorf("variable %s_violating: %q", f.Name, v)
		}
		val := validations[i].(map[string]interface{})
		if want := "!variables." + f.Name + "_violating"; val["expression"] != want {
			t.Errorf("validation %d: expression %v, want %s", i, val["expression"], want)
		}
		msg, _ := val["messageExpression"].(string)
		if msg == "" || strings.Contains(msg, "\n") || !strings.Contains(msg, "variables."+f.Name+"_violations") {
			t.Errorf("validation %d: messageExpression %q must be the messages of %s, with no newline", i, msg, f.Name)
		}
	}
	libs, _, _ := unstructured.NestedStringSlice(code[1].(map[string]interface{}), "source", "libs")
	if len(libs) != len(templates.Features())+1 {
		t.Errorf("want the shared Rego library and one per feature, got %d libs", len(libs))
	}
}
