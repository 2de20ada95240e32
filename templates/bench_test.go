package templates_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

func readObject(t testing.TB, path string) map[string]interface{} {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return obj
}

// fullSampleEvaluator loads the constraints of the full sample CR into the engine.
func fullSampleEvaluator(t testing.TB) *policytest.Evaluator {
	t.Helper()
	return fullSampleEvaluatorWith(t, policytest.EngineRego)
}

// fullSampleEvaluatorWith loads the constraints of the full sample CR with the engine.
func fullSampleEvaluatorWith(t testing.TB, engine policytest.Engine) *policytest.Evaluator {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "config", "samples", "policy_v1alpha1_podsecurityconstraints_full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	psc, err := loadSpec(t, data)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := policytest.NewWithEngine(context.Background(), engine, rendered.Objects(templates.RoleTemplate, templates.RoleConstraint))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestSamplePods: the realistic pod passes all features of the full sample; the pod
// built to violate everything is caught by every one of them.
func TestSamplePods(t *testing.T) {
	ev := fullSampleEvaluator(t)
	ctx := context.Background()
	got, err := ev.Review(ctx, policytest.Request{Object: readObject(t, filepath.Join("testdata", "pods", "compliant.yaml"))})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		t.Errorf("compliant pod denied: %s", v.Message)
	}
	got, err = ev.Review(ctx, policytest.Request{Object: readObject(t, filepath.Join("testdata", "pods", "all-violating.yaml"))})
	if err != nil {
		t.Fatal(err)
	}
	violated := map[string]bool{}
	for _, v := range got {
		violated[templates.FeatureOfMessage(v.Message)] = true
	}
	for _, f := range templates.Features() {
		if !violated[f.Name] {
			t.Errorf("feature %s did not catch the all-violating pod", f.Name)
		}
	}
}

// BenchmarkFullSample is the admission cost of a realistic 3-container pod against the full
// sample (17 features, one constraint), for a compliant pod and for one that violates every feature.
func BenchmarkFullSample(b *testing.B) {
	ev := fullSampleEvaluator(b)
	for _, name := range []string{"compliant", "all-violating"} {
		pod := readObject(b, filepath.Join("testdata", "pods", name+".yaml"))
		b.Run(name, func(b *testing.B) {
			benchReview(b, ev, []map[string]interface{}{pod})
		})
	}
}

// BenchmarkSideBySide compares five of our policies with gatekeeper-library's matching PSP
// templates, configured alike, on the pods Gatekeeper's own tests use (one per policy, each
// violating it) plus our compliant pod. Both run through the same engine and harness.
func BenchmarkSideBySide(b *testing.B) {
	dir := gatekeeperTestdata(b)
	var library []*unstructured.Unstructured
	for _, sub := range []string{"psp-templates", "psp-constraints"} {
		files, err := filepath.Glob(filepath.Join(dir, sub, "*.yaml"))
		if err != nil || len(files) != 5 {
			b.Fatalf("expected 5 files in %s: %v", sub, err)
		}
		for _, f := range files {
			u := &unstructured.Unstructured{Object: readObject(b, f)}
			if u.GetKind() == "ConstraintTemplate" {
				// These test templates are written as v1beta1, whose fields v1 shares.
				u.SetAPIVersion(templates.TemplateGVK.GroupVersion().String())
			}
			library = append(library, u)
		}
	}
	// Our five features with the parameters of the library's constraints.
	spec := []byte(`apiVersion: policy.podsecurity.dev/v1alpha1
kind: PodSecurityConstraints
metadata: {name: cluster}
spec:
  excludedNamespaces: []
  privilegedContainers: {enabled: true}
  hostNamespaces: {enabled: true}
  hostNetworking: {enabled: true, allowHostNetwork: true, hostPorts: [{min: 80, max: 9000}]}
  volumeTypes: {enabled: true, allowed: [configMap, emptyDir, projected, secret, downwardAPI, persistentVolumeClaim, flexVolume]}
  hostFilesystem: {enabled: true, allowedHostPaths: [{pathPrefix: /foo, readOnly: true}]}
`)
	psc, err := loadSpec(b, spec)
	if err != nil {
		b.Fatal(err)
	}
	rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	podFiles, err := filepath.Glob(filepath.Join(dir, "psp-pods", "*.yaml"))
	if err != nil || len(podFiles) != 5 {
		b.Fatalf("expected 5 pods: %v", err)
	}
	var violating []map[string]interface{}
	for _, f := range podFiles {
		violating = append(violating, readObject(b, f))
	}
	compliant := []map[string]interface{}{readObject(b, filepath.Join("testdata", "pods", "compliant.yaml"))}
	// Each engine configuration as Gatekeeper runs it: with CEL (its default) our templates run
	// their CEL code and these library templates, which have none, their Rego.
	// floor: five templates whose Rego does next to nothing, i.e. the engine's fixed cost per
	// review (input conversion, matching, query preparation per template), which no Rego
	// change can remove. library minus floor and psc minus floor compare the policies alone.
	for _, engine := range policytest.Engines() {
		load := func(objs []*unstructured.Unstructured) *policytest.Evaluator {
			ev, err := policytest.NewWithEngine(context.Background(), engine, objs)
			if err != nil {
				b.Fatal(err)
			}
			return ev
		}
		for _, side := range []struct {
			name string
			ev   *policytest.Evaluator
		}{{"floor", load(floorObjects(5))}, {"library", load(library)}, {"psc", load(rendered.Objects(templates.RoleTemplate, templates.RoleConstraint))}} {
			b.Run(string(engine)+"/"+side.name+"/violating-pods", func(b *testing.B) { benchReview(b, side.ev, violating) })
			b.Run(string(engine)+"/"+side.name+"/compliant-pod", func(b *testing.B) { benchReview(b, side.ev, compliant) })
		}
	}
}

// floorObjects returns n trivial ConstraintTemplates (one input lookup that never matches)
// and a constraint for each, matching Pods like the real ones.
func floorObjects(n int) []*unstructured.Unstructured {
	var objs []*unstructured.Unstructured
	for i := range n {
		kind := fmt.Sprintf("BenchFloor%d", i)
		objs = append(objs, &unstructured.Unstructured{Object: map[string]interface{}{
			"apiVersion": templates.TemplateGVK.GroupVersion().String(),
			"kind":       "ConstraintTemplate",
			"metadata":   map[string]interface{}{"name": strings.ToLower(kind)},
			"spec": map[string]interface{}{
				"crd": map[string]interface{}{"spec": map[string]interface{}{"names": map[string]interface{}{"kind": kind}}},
				"targets": []interface{}{map[string]interface{}{
					"target": "admission.k8s.gatekeeper.sh",
					"code": []interface{}{map[string]interface{}{"engine": "Rego", "source": map[string]interface{}{
						"version": "v1",
						"rego":    fmt.Sprintf("package benchfloor%d\n\nviolation contains {\"msg\": \"never\"} if input.review.object.spec.benchFloor == true\n", i),
					}}},
				}},
			},
		}}, &unstructured.Unstructured{Object: map[string]interface{}{
			"apiVersion": templates.ConstraintGroupVersion.String(),
			"kind":       kind,
			"metadata":   map[string]interface{}{"name": "floor"},
			"spec": map[string]interface{}{"match": map[string]interface{}{
				"kinds": []interface{}{map[string]interface{}{"apiGroups": []interface{}{""}, "kinds": []interface{}{"Pod"}}},
			}},
		}})
	}
	return objs
}

// benchReview reviews the pods in turn; ns/op is the latency of one review.
func benchReview(b *testing.B, ev *policytest.Evaluator, pods []map[string]interface{}) {
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := ev.Review(ctx, policytest.Request{Object: pods[i%len(pods)], Namespace: "shop"}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func gatekeeperTestdata(b *testing.B) string {
	b.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/open-policy-agent/gatekeeper/v3").Output()
	if err != nil {
		b.Fatalf("locating the gatekeeper module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "pkg", "webhook", "testdata", "psp-all-violations")
}

// BenchmarkEngines is the admission cost of the full sample (one template, one constraint) on each engine
// configuration: Gatekeeper's default (CEL, the templates' K8sNativeValidation code) and Rego
// forced (--enable-k8s-native-validation=false); compliant and all-violating pods.
func BenchmarkEngines(b *testing.B) {
	for _, engine := range policytest.Engines() {
		ev := fullSampleEvaluatorWith(b, engine)
		for _, name := range []string{"compliant", "all-violating"} {
			pod := readObject(b, filepath.Join("testdata", "pods", name+".yaml"))
			b.Run(string(engine)+"/"+name, func(b *testing.B) {
				benchReview(b, ev, []map[string]interface{}{pod})
			})
		}
	}
}
