package templates_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// renderSpec validates, defaults and renders a spec given as YAML.
func renderSpec(t *testing.T, spec string) templates.Inventory {
	t.Helper()
	psc, err := loadSpec(t, []byte("apiVersion: policy.podsecurity.dev/v1alpha1\nkind: PodSecurityConstraints\nmetadata: {name: cluster}\nspec: "+spec))
	if err != nil {
		t.Fatalf("spec is invalid: %v", err)
	}
	rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return rendered
}

// mutatorSummary is "Kind name location value" of each admission mutator (source Original);
// the expansion twins are checked separately.
func mutatorSummary(t *testing.T, inv templates.Inventory) []string {
	t.Helper()
	var out []string
	{
		for _, m := range inv.Objects(templates.RoleMutator) {
			if src, _, _ := unstructured.NestedString(m.Object, "spec", "match", "source"); src != "Original" {
				continue
			}
			loc, _, _ := unstructured.NestedString(m.Object, "spec", "location")
			var value interface{}
			if m.GetKind() == "ModifySet" {
				value, _, _ = unstructured.NestedSlice(m.Object, "spec", "parameters", "values", "fromList")
			} else {
				value, _, _ = unstructured.NestedFieldNoCopy(m.Object, "spec", "parameters", "assign", "value")
			}
			data, _ := json.Marshal(value)
			out = append(out, fmt.Sprintf("%s %s %s %s", m.GetKind(), m.GetName(), loc, data))
		}
	}
	return out
}

func TestRenderMutators(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec string
		want []string
	}{
		{name: "off by default", spec: `{readOnlyRootFilesystem: {enabled: true}, privilegeEscalation: {enabled: true}}`},
		{name: "features without defaults render none", spec: `{setDefaults: true, privilegedContainers: {enabled: true}, hostNamespaces: {enabled: true}, procMount: {enabled: true}, sysctls: {enabled: true}}`},
		{name: "disabled feature renders none", spec: `{setDefaults: true, readOnlyRootFilesystem: {enabled: false}}`},
		{name: "master switch off renders none", spec: `{enabled: false, setDefaults: true, readOnlyRootFilesystem: {enabled: true}}`},
		{name: "readOnlyRootFilesystem", spec: `{setDefaults: true, readOnlyRootFilesystem: {enabled: true}}`, want: []string{
			"Assign psc-read-only-root-filesystem-default spec.containers[name:*].securityContext.readOnlyRootFilesystem true",
			"Assign psc-read-only-root-filesystem-default-init spec.initContainers[name:*].securityContext.readOnlyRootFilesystem true",
		}},
		{name: "privilegeEscalation", spec: `{setDefaults: true, privilegeEscalation: {enabled: true}}`, want: []string{
			"Assign psc-privilege-escalation-default spec.containers[name:*].securityContext.allowPrivilegeEscalation false",
			"Assign psc-privilege-escalation-default-init spec.initContainers[name:*].securityContext.allowPrivilegeEscalation false",
		}},
		{name: "feature override on", spec: `{privilegeEscalation: {enabled: true, setDefaults: true}, readOnlyRootFilesystem: {enabled: true}}`, want: []string{
			"Assign psc-privilege-escalation-default spec.containers[name:*].securityContext.allowPrivilegeEscalation false",
			"Assign psc-privilege-escalation-default-init spec.initContainers[name:*].securityContext.allowPrivilegeEscalation false",
		}},
		{name: "feature override off", spec: `{setDefaults: true, privilegeEscalation: {enabled: true, setDefaults: false}, readOnlyRootFilesystem: {enabled: true}}`, want: []string{
			"Assign psc-read-only-root-filesystem-default spec.containers[name:*].securityContext.readOnlyRootFilesystem true",
			"Assign psc-read-only-root-filesystem-default-init spec.initContainers[name:*].securityContext.readOnlyRootFilesystem true",
		}},
		{name: "capabilities: required drops", spec: `{setDefaults: true, capabilities: {enabled: true, requiredDropCapabilities: [NET_RAW, SYS_ADMIN]}}`, want: []string{
			`ModifySet psc-capabilities-drop spec.containers[name:*].securityContext.capabilities.drop ["NET_RAW","SYS_ADMIN"]`,
			`ModifySet psc-capabilities-drop-init spec.initContainers[name:*].securityContext.capabilities.drop ["NET_RAW","SYS_ADMIN"]`,
		}},
		{name: "capabilities: ALL covers the others", spec: `{setDefaults: true, capabilities: {enabled: true, requiredDropCapabilities: [NET_RAW, ALL]}}`, want: []string{
			`ModifySet psc-capabilities-drop spec.containers[name:*].securityContext.capabilities.drop ["ALL"]`,
			`ModifySet psc-capabilities-drop-init spec.initContainers[name:*].securityContext.capabilities.drop ["ALL"]`,
		}},
		{name: "capabilities: nothing required", spec: `{setDefaults: true, capabilities: {enabled: true, allowedCapabilities: [NET_BIND_SERVICE]}}`},
		{name: "seccomp RuntimeDefault allowed", spec: `{setDefaults: true, seccomp: {enabled: true, allowedProfiles: [Localhost, RuntimeDefault]}}`, want: []string{
			`Assign psc-seccomp-runtime-default spec.securityContext.seccompProfile {"type":"RuntimeDefault"}`,
		}},
		{name: "seccomp any profile", spec: `{setDefaults: true, seccomp: {enabled: true, allowedProfiles: ["*"]}}`, want: []string{
			`Assign psc-seccomp-runtime-default spec.securityContext.seccompProfile {"type":"RuntimeDefault"}`,
		}},
		{name: "seccomp RuntimeDefault not allowed", spec: `{setDefaults: true, seccomp: {enabled: true, allowedProfiles: [Localhost], allowedLocalhostFiles: [audit.json]}}`},
		{name: "appArmor runtime/default allowed", spec: `{setDefaults: true, appArmor: {enabled: true, allowedProfiles: ["localhost/*", runtime/default]}}`, want: []string{
			`Assign psc-app-armor-runtime-default spec.securityContext.appArmorProfile {"type":"RuntimeDefault"}`,
		}},
		{name: "appArmor any", spec: `{setDefaults: true, appArmor: {enabled: true, allowedProfiles: ["*"]}}`, want: []string{
			`Assign psc-app-armor-runtime-default spec.securityContext.appArmorProfile {"type":"RuntimeDefault"}`,
		}},
		{name: "appArmor only localhost", spec: `{setDefaults: true, appArmor: {enabled: true, allowedProfiles: ["localhost/*"]}}`},
		{name: "seLinux one option", spec: `{setDefaults: true, seLinux: {enabled: true, allowedSELinuxOptions: [{type: container_t, level: "s0:c1,c2"}]}}`, want: []string{
			`Assign psc-se-linux-options spec.securityContext.seLinuxOptions {"level":"s0:c1,c2","type":"container_t"}`,
		}},
		{name: "seLinux several options: no choice to make", spec: `{setDefaults: true, seLinux: {enabled: true, allowedSELinuxOptions: [{type: container_t}, {type: container_init_t}]}}`},
		{name: "seLinux none allowed", spec: `{setDefaults: true, seLinux: {enabled: true}}`},
		{name: "usersAndGroups MustRunAsNonRoot", spec: `{setDefaults: true, usersAndGroups: {enabled: true, runAsUser: {rule: MustRunAsNonRoot}}}`, want: []string{
			"Assign psc-users-and-groups-run-as-non-root spec.securityContext.runAsNonRoot true",
		}},
		{name: "usersAndGroups MustRunAs everywhere: first range's min", spec: `{setDefaults: true, usersAndGroups: {enabled: true, runAsUser: {rule: MustRunAs, ranges: [{min: 1000, max: 2000}, {min: 10, max: 20}]}, runAsGroup: {rule: MustRunAs, ranges: [{min: 3000, max: 3000}]}, fsGroup: {rule: MustRunAs, ranges: [{min: 4000, max: 5000}]}, supplementalGroups: {rule: MustRunAs, ranges: [{min: 6000, max: 7000}]}}}`, want: []string{
			"Assign psc-users-and-groups-run-as-user spec.securityContext.runAsUser 1000",
			"Assign psc-users-and-groups-run-as-group spec.securityContext.runAsGroup 3000",
			"Assign psc-users-and-groups-fs-group spec.securityContext.fsGroup 4000",
			"Assign psc-users-and-groups-supplemental-groups spec.securityContext.supplementalGroups [6000]",
		}},
		{name: "spec.exemptImages withhold defaults that follow spec.setDefaults", spec: `{setDefaults: true, exemptImages: ["registry.example.com/debug/*"], readOnlyRootFilesystem: {enabled: true}, seccomp: {enabled: true, allowedProfiles: [RuntimeDefault]}}`},
		{name: "a feature's exemptImages withhold only its defaults", spec: `{setDefaults: true, readOnlyRootFilesystem: {enabled: true, exemptImages: [falco]}, privilegeEscalation: {enabled: true}}`, want: []string{
			"Assign psc-privilege-escalation-default spec.containers[name:*].securityContext.allowPrivilegeEscalation false",
			"Assign psc-privilege-escalation-default-init spec.initContainers[name:*].securityContext.allowPrivilegeEscalation false",
		}},
		{name: "exemptImages with the feature's own setDefaults true: every container", spec: `{exemptImages: ["registry.example.com/debug/*"], readOnlyRootFilesystem: {enabled: true, setDefaults: true}, seccomp: {enabled: true, setDefaults: true, exemptImages: [falco], allowedProfiles: [RuntimeDefault]}}`, want: []string{
			"Assign psc-read-only-root-filesystem-default spec.containers[name:*].securityContext.readOnlyRootFilesystem true",
			"Assign psc-read-only-root-filesystem-default-init spec.initContainers[name:*].securityContext.readOnlyRootFilesystem true",
			`Assign psc-seccomp-runtime-default spec.securityContext.seccompProfile {"type":"RuntimeDefault"}`,
		}},
		{name: "exemptImages with the feature's own setDefaults false", spec: `{setDefaults: true, exemptImages: [falco], readOnlyRootFilesystem: {enabled: true, setDefaults: false}}`},
		{name: "usersAndGroups MayRunAs and RunAsAny set nothing", spec: `{setDefaults: true, usersAndGroups: {enabled: true, runAsUser: {rule: RunAsAny}, runAsGroup: {rule: MayRunAs, ranges: [{min: 1, max: 2}]}, fsGroup: {rule: RunAsAny}, supplementalGroups: {rule: MayRunAs, ranges: [{min: 1, max: 2}]}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rendered := renderSpec(t, tc.spec)
			got := mutatorSummary(t, rendered)
			if !slices.Equal(got, tc.want) {
				t.Errorf("mutators:\n got: %q\nwant: %q", got, tc.want)
			}
			checkMutatorShape(t, rendered)
		})
	}
}

// checkMutatorShape: every admission mutator has an expansion twin; both match the
// constraint's pods; labels, names and parameters are what Gatekeeper needs.
func checkMutatorShape(t *testing.T, inv templates.Inventory) {
	t.Helper()
	for _, name := range inv.Features() {
		f, _ := templates.FeatureByName(name)
		constraint, ok := inv.Find(templates.RoleConstraint, name)
		if !ok {
			t.Fatalf("feature %s has no constraint", name)
		}
		var mutators []*unstructured.Unstructured
		for _, it := range inv {
			if it.Role == templates.RoleMutator && it.Feature == name {
				mutators = append(mutators, it.Object)
			}
		}
		r := struct {
			Feature    templates.Feature
			Constraint *unstructured.Unstructured
			Mutators   []*unstructured.Unstructured
		}{f, constraint, mutators}
		if _, ok := r.Constraint.Object["spec"].(map[string]interface{})["parameters"].(map[string]interface{})["setDefaults"]; ok {
			t.Errorf("%s: setDefaults leaked into the constraint's parameters", r.Feature.Name)
		}
		constraintExcluded, _, _ := unstructured.NestedStringSlice(r.Constraint.Object, "spec", "match", "excludedNamespaces")
		byName := map[string]*unstructured.Unstructured{}
		for _, m := range r.Mutators {
			byName[m.GetName()] = m
		}
		for _, m := range r.Mutators {
			name := m.GetName()
			if len(name) > 63 {
				t.Errorf("%s: Gatekeeper rejects mutator names longer than 63 characters", name)
			}
			if !strings.HasPrefix(name, r.Feature.ObjectName()+"-") {
				t.Errorf("%s does not start with the feature's object name", name)
			}
			if m.GetLabels()[templates.LabelManagedBy] != templates.ManagedByValue || m.GetLabels()[templates.LabelFeature] != r.Feature.Name {
				t.Errorf("%s labels %v", name, m.GetLabels())
			}
			excluded, _, _ := unstructured.NestedStringSlice(m.Object, "spec", "match", "excludedNamespaces")
			if !slices.Equal(excluded, constraintExcluded) {
				t.Errorf("%s excludes %v, the constraint %v", name, excluded, constraintExcluded)
			}
			src, _, _ := unstructured.NestedString(m.Object, "spec", "match", "source")
			applyTo, _, _ := unstructured.NestedSlice(m.Object, "spec", "applyTo")
			ops, hasOps := applyTo[0].(map[string]interface{})["operations"]
			switch src {
			case "Original":
				if !reflect.DeepEqual(ops, []interface{}{"CREATE"}) {
					t.Errorf("%s: a stored pod must not be mutated, operations %v", name, ops)
				}
				if _, ok := byName[name+"-generated"]; !ok {
					t.Errorf("%s has no expansion twin", name)
				}
			case "Generated":
				if hasOps {
					t.Errorf("%s: expansion runs mutators with no operation; operations %v would skip it", name, ops)
				}
				twin, ok := byName[strings.TrimSuffix(name, "-generated")]
				if !ok || !reflect.DeepEqual(twin.Object["spec"].(map[string]interface{})["parameters"], m.Object["spec"].(map[string]interface{})["parameters"]) {
					t.Errorf("%s differs from its admission twin", name)
				}
			default:
				t.Errorf("%s: source %q", name, src)
			}
			if m.GetKind() == "Assign" {
				loc, _, _ := unstructured.NestedString(m.Object, "spec", "location")
				tests, _, _ := unstructured.NestedSlice(m.Object, "spec", "parameters", "pathTests")
				want := []interface{}{map[string]interface{}{"subPath": loc, "condition": "MustNotExist"}}
				if !reflect.DeepEqual(tests, want) {
					t.Errorf("%s may overwrite a value the pod sets: pathTests %v", name, tests)
				}
			}
		}
		if _, err := policytest.NewMutator(r.Mutators); err != nil {
			t.Errorf("Gatekeeper's mutation system rejects the mutators of %s: %v", r.Feature.Name, err)
		}
	}
}

// TestFeaturesWithDefaultsAcceptSetDefaults: a feature has a defaults.yaml exactly when its API
// block has setDefaults.
func TestFeaturesWithDefaultsAcceptSetDefaults(t *testing.T) {
	spec := reflect.TypeOf(v1alpha1.PodSecurityConstraintsSpec{})
	withDefaults := 0
	for _, f := range templates.Features() {
		var field reflect.StructField
		for i := 0; i < spec.NumField(); i++ {
			if strings.Split(spec.Field(i).Tag.Get("json"), ",")[0] == f.Name {
				field = spec.Field(i)
			}
		}
		if field.Type == nil {
			t.Fatalf("feature %s has no API field", f.Name)
		}
		_, hasField := field.Type.Elem().FieldByName("SetDefaults")
		if hasField != f.HasDefaults() {
			t.Errorf("feature %s: setDefaults in the API %v, defaults.yaml %v", f.Name, hasField, f.HasDefaults())
		}
		if f.HasDefaults() {
			withDefaults++
		}
	}
	if withDefaults != 7 {
		t.Errorf("%d features have defaults, want 7", withDefaults)
	}
}

// strictSpec is the full sample with defaults on.
const strictDefaultsSample = "policy_v1alpha1_podsecurityconstraints_full.yaml"

func strictSpec(t *testing.T, setDefaults bool) []*unstructured.Unstructured {
	t.Helper()
	return renderSample(t, func(spec *v1alpha1.PodSecurityConstraintsSpec) { spec.SetDefaults = &setDefaults })
}

// renderSample renders the full sample after edit, keeping the templates, constraints and
// mutators (expansion is modelled by MutationRequest.Generated and Request.Generated).
func renderSample(t *testing.T, edit func(*v1alpha1.PodSecurityConstraintsSpec)) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "config", "samples", strictDefaultsSample))
	if err != nil {
		t.Fatal(err)
	}
	psc, err := loadSpec(t, data)
	if err != nil {
		t.Fatal(err)
	}
	edit(&psc.Spec)
	inv, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return inv.Objects(templates.RoleTemplate, templates.RoleConstraint, templates.RoleMutator)
}

func podFromYAML(t *testing.T, s string) map[string]interface{} {
	t.Helper()
	obj := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// barePod has no securityContext at all: init + two containers, one adding NET_BIND_SERVICE.
const barePod = `
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: shop}
spec:
  initContainers:
    - {name: init, image: registry.example.com/shop/init:1}
  containers:
    - {name: app, image: registry.example.com/shop/app:1}
    - name: proxy
      image: registry.example.com/shop/proxy:1
      securityContext: {capabilities: {add: [NET_BIND_SERVICE]}}
`

// barePodDefaulted is barePod with exactly the defaults of the full sample.
const barePodDefaulted = `
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: shop}
spec:
  securityContext:
    runAsNonRoot: true
    runAsGroup: 1000
    seLinuxOptions: {type: container_t}
    appArmorProfile: {type: RuntimeDefault}
    seccompProfile: {type: RuntimeDefault}
  initContainers:
    - name: init
      image: registry.example.com/shop/init:1
      securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
  containers:
    - name: app
      image: registry.example.com/shop/app:1
      securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    - name: proxy
      image: registry.example.com/shop/proxy:1
      securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}}
`

// TestDefaultsThenValidation runs the rendered mutators with Gatekeeper's mutation system, as
// its mutating webhook does before the validating one, and reviews the result with the real
// policies.
func TestDefaultsThenValidation(t *testing.T) {
	ctx := context.Background()
	objs := strictSpec(t, true)
	mut, ev := mutatorAndEvaluator(t, objs)
	review := func(t *testing.T, pod map[string]interface{}, generated bool) []string {
		t.Helper()
		vs, err := ev.Review(ctx, policytest.Request{Object: pod, Generated: generated})
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, v := range policytest.Denied(vs) {
			msgs = append(msgs, v.Message)
		}
		sort.Strings(msgs)
		return msgs
	}

	t.Run("bare pod is completed and admitted", func(t *testing.T) {
		pod := podFromYAML(t, barePod)
		if len(review(t, podFromYAML(t, barePod), false)) == 0 {
			t.Fatal("the bare pod passes without defaults; the test proves nothing")
		}
		changed, err := mut.Mutate(ctx, policytest.MutationRequest{Object: pod, Operation: "CREATE"})
		if err != nil || !changed {
			t.Fatalf("changed %v, err %v", changed, err)
		}
		if want := podFromYAML(t, barePodDefaulted); !reflect.DeepEqual(pod, want) {
			got, _ := yaml.Marshal(pod)
			t.Fatalf("defaulted pod:\n%s\nwant:\n%s", got, barePodDefaulted)
		}
		if msgs := review(t, pod, false); len(msgs) > 0 {
			t.Errorf("defaulted pod denied: %q", msgs)
		}
		again, _ := json.Marshal(pod)
		changed, err = mut.Mutate(ctx, policytest.MutationRequest{Object: pod, Operation: "CREATE"})
		if err != nil || changed {
			t.Errorf("second pass changed %v, err %v: the mutators do not converge", changed, err)
		}
		if after, _ := json.Marshal(pod); string(after) != string(again) {
			t.Errorf("second pass changed the pod:\n%s\n%s", again, after)
		}
	})

	t.Run("workload judged as its pod is completed", func(t *testing.T) {
		pod := podFromYAML(t, barePod)
		// Expansion and audit run mutators with source Generated and no operation.
		if _, err := mut.Mutate(ctx, policytest.MutationRequest{Object: pod, Generated: true}); err != nil {
			t.Fatal(err)
		}
		if want := podFromYAML(t, barePodDefaulted); !reflect.DeepEqual(pod, want) {
			got, _ := yaml.Marshal(pod)
			t.Fatalf("generated pod:\n%s", got)
		}
		if msgs := review(t, pod, true); len(msgs) > 0 {
			t.Errorf("generated pod denied: %q", msgs)
		}
	})

	t.Run("stored pod is not changed on update", func(t *testing.T) {
		pod := podFromYAML(t, barePod)
		changed, err := mut.Mutate(ctx, policytest.MutationRequest{Object: pod, Operation: "UPDATE"})
		if err != nil || changed {
			t.Errorf("an UPDATE was mutated (changed %v, err %v): the API server rejects spec changes of a stored pod", changed, err)
		}
	})

	t.Run("excluded namespace is not defaulted", func(t *testing.T) {
		pod := podFromYAML(t, barePod)
		changed, err := mut.Mutate(ctx, policytest.MutationRequest{Object: pod, Namespace: "kube-system", Operation: "CREATE"})
		if err != nil || changed {
			t.Errorf("pod in kube-system changed %v, err %v", changed, err)
		}
	})

	for _, tc := range []struct {
		name string
		pod  string
		want []string
	}{
		{name: "explicit allowPrivilegeEscalation true stays denied", pod: `
apiVersion: v1
kind: Pod
metadata: {name: escalate, namespace: shop}
spec:
  containers:
    - {name: app, image: app:1, securityContext: {allowPrivilegeEscalation: true}}
`, want: []string{`container "app" has securityContext.allowPrivilegeEscalation true, must be false`}},
		{name: "explicit runAsUser 0 stays denied", pod: `
apiVersion: v1
kind: Pod
metadata: {name: root, namespace: shop}
spec:
  securityContext: {runAsUser: 0}
  containers:
    - {name: app, image: app:1}
`, want: []string{`container "app" runs as user 0 (from the pod securityContext), must run as non-root`}},
		{name: "explicit values are kept", pod: `
apiVersion: v1
kind: Pod
metadata: {name: own, namespace: shop}
spec:
  securityContext: {runAsGroup: 2000, seccompProfile: {type: Localhost, localhostProfile: audit.json}}
  containers:
    - {name: app, image: app:1, securityContext: {readOnlyRootFilesystem: false, capabilities: {drop: [NET_RAW]}}}
`, want: []string{`readOnlyRootFilesystem`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := podFromYAML(t, tc.pod)
			original := podFromYAML(t, tc.pod)
			if _, err := mut.Mutate(ctx, policytest.MutationRequest{Object: pod, Operation: "CREATE"}); err != nil {
				t.Fatal(err)
			}
			assertKept(t, original, pod)
			msgs := review(t, pod, false)
			for _, w := range tc.want {
				found := false
				for _, m := range msgs {
					found = found || strings.Contains(m, w)
				}
				if !found {
					t.Errorf("violations %q lack %q", msgs, w)
				}
			}
		})
	}

	t.Run("without setDefaults the bare pod is denied", func(t *testing.T) {
		objs := strictSpec(t, false)
		for _, o := range objs {
			if o.GroupVersionKind().Group == templates.MutationGroupVersion.Group {
				t.Fatalf("setDefaults false rendered %s %s", o.GetKind(), o.GetName())
			}
		}
		if len(review(t, podFromYAML(t, barePod), false)) == 0 {
			t.Error("bare pod admitted without defaults")
		}
	})
}

// assertKept: every scalar the original pod sets is unchanged after mutation (lists of
// capabilities may only grow).
func assertKept(t *testing.T, original, mutated interface{}, path ...string) {
	t.Helper()
	switch o := original.(type) {
	case map[string]interface{}:
		m, ok := mutated.(map[string]interface{})
		if !ok {
			t.Errorf("%s: was an object, now %v", strings.Join(path, "."), mutated)
			return
		}
		for k, v := range o {
			assertKept(t, v, m[k], append(path, k)...)
		}
	case []interface{}:
		m, ok := mutated.([]interface{})
		if !ok || len(m) < len(o) {
			t.Errorf("%s: was %v, now %v", strings.Join(path, "."), o, mutated)
			return
		}
		for i := range o {
			assertKept(t, o[i], m[i], append(path, fmt.Sprint(i))...)
		}
	default:
		if !reflect.DeepEqual(original, mutated) {
			t.Errorf("%s: a set value was overwritten: %v, now %v", strings.Join(path, "."), original, mutated)
		}
	}
}

// TestDefaultedPodPassesPodSecurityStandards uses the Kubernetes Pod Security Admission library
// as an oracle: the bare pod, completed by the defaults of the full sample, meets the
// restricted Pod Security Standard, and the bare pod alone does not.
func TestDefaultedPodPassesPodSecurityStandards(t *testing.T) {
	evaluator, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	check := func(doc string) psapolicy.AggregateCheckResult {
		pod := &corev1.Pod{}
		if err := yaml.UnmarshalStrict([]byte(doc), pod); err != nil {
			t.Fatal(err)
		}
		return psapolicy.AggregateCheckResults(evaluator.EvaluatePod(restricted, &pod.ObjectMeta, &pod.Spec))
	}
	if res := check(barePod); res.Allowed {
		t.Fatal("the bare pod meets restricted without defaults; the oracle proves nothing")
	}
	// barePodDefaulted is what TestDefaultsThenValidation gets from Gatekeeper's mutation system.
	if res := check(barePodDefaulted); !res.Allowed {
		t.Errorf("defaulted pod fails restricted: %s", res.ForbiddenDetail())
	}
}

// TestWithheldDefaults: Render withholds exactly the defaults a feature follows from
// spec.setDefaults while it exempts images, and says why, naming the images its constraint
// exempts.
func TestWithheldDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec string
		want map[string]string // feature: the images the reason names
	}{
		{name: "no exempt images", spec: `{setDefaults: true, readOnlyRootFilesystem: {enabled: true}}`},
		{name: "defaults off", spec: `{exemptImages: [falco], readOnlyRootFilesystem: {enabled: true}}`},
		{name: "spec.exemptImages: every defaulting feature that follows spec.setDefaults",
			spec: `{setDefaults: true, exemptImages: ["registry.example.com/debug/*"], privilegedContainers: {enabled: true}, readOnlyRootFilesystem: {enabled: true, exemptImages: [falco]}, privilegeEscalation: {enabled: true, setDefaults: true}, capabilities: {enabled: true, setDefaults: false, requiredDropCapabilities: [ALL]}, seccomp: {enabled: true, allowedProfiles: [RuntimeDefault]}}`,
			want: map[string]string{"readOnlyRootFilesystem": "registry.example.com/debug/*, falco", "seccomp": "registry.example.com/debug/*"}},
		{name: "nothing to default: nothing withheld", spec: `{setDefaults: true, exemptImages: [falco], seLinux: {enabled: true}, capabilities: {enabled: true}}`},
		{name: "disabled feature", spec: `{setDefaults: true, exemptImages: [falco], readOnlyRootFilesystem: {enabled: false}}`},
		{name: "master switch off", spec: `{enabled: false, setDefaults: true, exemptImages: [falco], readOnlyRootFilesystem: {enabled: true}}`},
		{name: "profile features follow spec.setDefaults", spec: `{profile: restricted, setDefaults: true, exemptImages: [falco]}`,
			want: map[string]string{"privilegeEscalation": "falco", "capabilities": "falco", "usersAndGroups": "falco", "seccomp": "falco", "appArmor": "falco"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			psc, err := loadSpec(t, []byte("apiVersion: policy.podsecurity.dev/v1alpha1\nkind: PodSecurityConstraints\nmetadata: {name: cluster}\nspec: "+tc.spec))
			if err != nil {
				t.Fatalf("spec is invalid: %v", err)
			}
			got, err := templates.WithheldDefaults(&psc.Spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Errorf("withheld for %v, want %v", got, tc.want)
			}
			inv := renderSpec(t, tc.spec)
			for feature, images := range tc.want {
				why, ok := got[feature]
				if !ok {
					t.Errorf("%s: not withheld", feature)
					continue
				}
				if !strings.Contains(why, "exempts images ("+images+")") || !strings.Contains(why, feature+".setDefaults: true") {
					t.Errorf("%s: reason %q does not name the images %s and the way out", feature, why, images)
				}
				// The images named are the ones the feature's constraint exempts.
				con, ok := inv.Find(templates.RoleConstraint, feature)
				if !ok {
					t.Fatalf("%s has no constraint", feature)
				}
				// Its own entry's, else the constraint's.
				params, found, _ := unstructured.NestedStringSlice(con.Object, "spec", "parameters", "features", feature, "exemptImages")
				if !found {
					params, _, _ = unstructured.NestedStringSlice(con.Object, "spec", "parameters", "exemptImages")
				}
				if strings.Join(params, ", ") != images {
					t.Errorf("%s: the constraint exempts %v, the reason names %s", feature, params, images)
				}
				for _, it := range inv {
					if it.Role == templates.RoleMutator && it.Feature == feature {
						t.Errorf("%s: withheld, yet %s was rendered", feature, it.Object.GetName())
					}
				}
			}
		})
	}
}

// withEphemeral adds ephemeral containers to a pod given as YAML.
func withEphemeral(t *testing.T, podYAML string, containers ...map[string]interface{}) map[string]interface{} {
	t.Helper()
	pod := podFromYAML(t, podYAML)
	var list []interface{}
	for _, c := range containers {
		list = append(list, c)
	}
	pod["spec"].(map[string]interface{})["ephemeralContainers"] = list
	return pod
}

// TestEphemeralContainersAreCheckedNotDefaulted: kubectl debug adds an ephemeral container with
// an UPDATE of pods/ephemeralcontainers, which Gatekeeper's mutation webhook receives as an
// UPDATE of the Pod (v3.23 cannot tell it from an UPDATE of the pod itself). No rendered
// mutator changes such a request, neither the container being added nor one added earlier
// (the API server would reject the change of an existing one), and the real policies still
// judge the added container, and only it.
func TestEphemeralContainersAreCheckedNotDefaulted(t *testing.T) {
	ctx := context.Background()
	objs := strictSpec(t, true)
	mut, ev := mutatorAndEvaluator(t, objs)
	bare := func(name string) map[string]interface{} {
		return map[string]interface{}{"name": name, "image": "busybox", "terminationMessagePolicy": "File"}
	}
	// What kubectl debug --profile=restricted sets, plus readOnlyRootFilesystem (--custom).
	restricted := func(name string) map[string]interface{} {
		c := bare(name)
		c["securityContext"] = map[string]interface{}{
			"runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
			"capabilities":   map[string]interface{}{"drop": []interface{}{"ALL"}},
			"seccompProfile": map[string]interface{}{"type": "RuntimeDefault"},
		}
		return c
	}
	// The stored pod was completed at creation; "old" was added before setDefaults was on.
	stored := withEphemeral(t, barePodDefaulted, bare("old"))

	for _, tc := range []struct {
		name   string
		added  map[string]interface{}
		denied []string // substrings, each about the added container
	}{
		{name: "bare debug container: not completed, denied", added: bare("debugger"), denied: []string{
			`psc/readOnlyRootFilesystem: ephemeralContainer "debugger"`,
			`psc/privilegeEscalation: ephemeralContainer "debugger"`,
			`psc/capabilities: ephemeralContainer "debugger"`,
		}},
		{name: "restricted debug container: admitted as sent", added: restricted("debugger")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := withEphemeral(t, barePodDefaulted, bare("old"), tc.added)
			sent, _ := json.Marshal(req)
			changed, err := mut.Mutate(ctx, policytest.MutationRequest{Object: req, Operation: "UPDATE"})
			if err != nil || changed {
				t.Errorf("the ephemeralcontainers UPDATE was mutated (changed %v, err %v)", changed, err)
			}
			if after, _ := json.Marshal(req); string(after) != string(sent) {
				t.Errorf("the request changed:\n%s\n%s", sent, after)
			}
			vs, err := ev.Review(ctx, policytest.Request{Operation: "UPDATE", SubResource: "ephemeralcontainers", Object: req, OldObject: stored})
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, v := range policytest.Denied(vs) {
				msgs = append(msgs, v.Message)
				if !strings.Contains(v.Message, `ephemeralContainer "debugger"`) {
					t.Errorf("denial about something else than the added container: %s", v.Message)
				}
			}
			for _, want := range tc.denied {
				if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, want) }) {
					t.Errorf("denials %q lack %q", msgs, want)
				}
			}
			if len(tc.denied) == 0 && len(msgs) > 0 {
				t.Errorf("denied: %q", msgs)
			}
		})
	}

	t.Run("an UPDATE of the pod itself changes nothing", func(t *testing.T) {
		req := withEphemeral(t, barePodDefaulted, bare("old"))
		req["metadata"].(map[string]interface{})["labels"] = map[string]interface{}{"touched": "yes"}
		changed, err := mut.Mutate(ctx, policytest.MutationRequest{Object: req, Operation: "UPDATE"})
		if err != nil || changed {
			t.Errorf("a label change was mutated (changed %v, err %v): the API server rejects any change of spec.ephemeralContainers there", changed, err)
		}
	})
}

// exemptSpec is the full sample with defaults on and registry.example.com/debug/* exempt from
// readOnlyRootFilesystem, whose own setDefaults is ownDefaults (nil: unset).
func exemptSpec(t *testing.T, ownDefaults *bool) []*unstructured.Unstructured {
	t.Helper()
	return renderSample(t, func(spec *v1alpha1.PodSecurityConstraintsSpec) {
		on := true
		spec.SetDefaults = &on
		spec.ReadOnlyRootFilesystem.ExemptImages = []v1alpha1.ImagePattern{"registry.example.com/debug/*"}
		spec.ReadOnlyRootFilesystem.SetDefaults = ownDefaults
	})
}

// TestExemptImagesAndDefaults, with Gatekeeper's mutation system and the real policies: while
// a feature with exemptImages follows spec.setDefaults, nothing of it is defaulted (the exempt
// container keeps its writable root filesystem, the other one is denied as without defaults);
// with the feature's own setDefaults: true every container is completed, the exempt one too.
func TestExemptImagesAndDefaults(t *testing.T) {
	ctx := context.Background()
	const pod = `
apiVersion: v1
kind: Pod
metadata: {name: mixed, namespace: shop}
spec:
  containers:
    - {name: app, image: registry.example.com/shop/app:1}
    - {name: debug, image: registry.example.com/debug/tools:1}
`
	readOnly := func(obj map[string]interface{}) []string {
		var out []string
		for _, c := range obj["spec"].(map[string]interface{})["containers"].([]interface{}) {
			v, found, _ := unstructured.NestedFieldNoCopy(c.(map[string]interface{}), "securityContext", "readOnlyRootFilesystem")
			out = append(out, fmt.Sprintf("%s=%v", c.(map[string]interface{})["name"], map[bool]interface{}{true: v, false: "unset"}[found]))
		}
		return out
	}
	run := func(t *testing.T, own *bool) ([]string, []string) {
		t.Helper()
		objs := exemptSpec(t, own)
		mut, ev := mutatorAndEvaluator(t, objs)
		obj := podFromYAML(t, pod)
		if _, err := mut.Mutate(ctx, policytest.MutationRequest{Object: obj, Operation: "CREATE"}); err != nil {
			t.Fatal(err)
		}
		vs, err := ev.Review(ctx, policytest.Request{Object: obj})
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, v := range policytest.Denied(vs) {
			msgs = append(msgs, v.Message)
		}
		// The other features' defaults apply either way.
		if _, found, _ := unstructured.NestedFieldNoCopy(obj, "spec", "securityContext", "runAsNonRoot"); !found {
			t.Errorf("the other features' defaults were not applied: %v", obj["spec"])
		}
		return readOnly(obj), msgs
	}

	t.Run("withheld", func(t *testing.T) {
		got, msgs := run(t, nil)
		if want := []string{"app=unset", "debug=unset"}; !slices.Equal(got, want) {
			t.Errorf("readOnlyRootFilesystem %v, want %v", got, want)
		}
		want := []string{`psc/readOnlyRootFilesystem: container "app" has securityContext.readOnlyRootFilesystem unset, must be true`}
		if !slices.Equal(msgs, want) {
			t.Errorf("denials %q, want %q", msgs, want)
		}
	})
	t.Run("the feature's own setDefaults true", func(t *testing.T) {
		on := true
		got, msgs := run(t, &on)
		if want := []string{"app=true", "debug=true"}; !slices.Equal(got, want) {
			t.Errorf("readOnlyRootFilesystem %v, want %v", got, want)
		}
		if len(msgs) > 0 {
			t.Errorf("denied: %q", msgs)
		}
	})
}

// mutatorAndEvaluator loads the rendered objects into Gatekeeper's mutation system and into the
// validating engines, as a cluster with both webhooks runs them.
func mutatorAndEvaluator(t *testing.T, objs []*unstructured.Unstructured) (*policytest.Mutator, *policytest.Evaluator) {
	t.Helper()
	mut, err := policytest.NewMutator(objs)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := policytest.New(context.Background(), objs)
	if err != nil {
		t.Fatal(err)
	}
	return mut, ev
}
