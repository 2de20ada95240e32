package templates_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// Where the time of a review goes: the engines' fixed cost per constraint, and each feature's
// own cost beyond it.

// BenchmarkConstraintCount is the engines' fixed cost per constraint: N templates whose code
// does next to nothing (one field lookup that never matches), on the compliant pod, for N =
// 1, 5, 15, 17, each on the CEL driver and on the Rego driver.
func BenchmarkConstraintCount(b *testing.B) {
	pod := readObject(b, filepath.Join("testdata", "pods", "compliant.yaml"))
	for _, engine := range policytest.Engines() {
		for _, n := range []int{1, 5, 15, 17} {
			ev, err := policytest.NewWithEngine(context.Background(), engine, floorObjectsFor(engine, n))
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/%d", engine, n), func(b *testing.B) { benchReview(b, ev, []map[string]interface{}{pod}) })
		}
	}
}

// floorObjectsFor is floorObjects with CEL code instead of Rego for the CEL engine.
func floorObjectsFor(engine policytest.Engine, n int) []*unstructured.Unstructured {
	objs := floorObjects(n)
	if engine != policytest.EngineCEL {
		return objs
	}
	for _, o := range objs {
		if o.GetKind() != "ConstraintTemplate" {
			continue
		}
		_ = unstructured.SetNestedSlice(o.Object, []interface{}{map[string]interface{}{
			"target": "admission.k8s.gatekeeper.sh",
			"code": []interface{}{map[string]interface{}{"engine": "K8sNativeValidation", "source": map[string]interface{}{
				"validations": []interface{}{map[string]interface{}{
					"expression": "!has(variables.anyObject.spec.benchFloor)",
					"message":    "never",
				}},
			}}},
		}}, "spec", "targets")
	}
	return objs
}

// BenchmarkPerFeature is each feature of the full sample alone (the policy template and a
// constraint naming only that feature, on the CEL engine as Gatekeeper runs it by default) on
// both pods: compared with BenchmarkConstraintCount/K8sNativeValidation/1 it gives the cost of
// each feature's expressions beyond the fixed cost of a constraint.
func BenchmarkPerFeature(b *testing.B) {
	rendered := fullSampleRendered(b)
	for _, feature := range rendered.Features() {
		tmpl, _ := rendered.Find(templates.RoleTemplate, feature)
		con, ok := rendered.Find(templates.RoleConstraint, feature)
		if !ok {
			b.Fatalf("feature %s: no constraint rendered", feature)
		}
		con = con.DeepCopy()
		params, _, _ := unstructured.NestedMap(con.Object, "spec", "parameters", "features", feature)
		if err := unstructured.SetNestedMap(con.Object, map[string]interface{}{feature: params}, "spec", "parameters", "features"); err != nil {
			b.Fatal(err)
		}
		objs := []*unstructured.Unstructured{tmpl, con}
		ev, err := policytest.NewWithEngine(context.Background(), policytest.EngineCEL, objs)
		if err != nil {
			b.Fatal(err)
		}
		for _, name := range []string{"compliant", "all-violating"} {
			pod := readObject(b, filepath.Join("testdata", "pods", name+".yaml"))
			b.Run(feature+"/"+name, func(b *testing.B) { benchReview(b, ev, []map[string]interface{}{pod}) })
		}
	}
}
