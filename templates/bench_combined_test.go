package templates_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// This file holds a benchmark-only prototype, not product code: the features of one
// enforcement action (and one match) folded into a single ConstraintTemplate and constraint,
// so that Gatekeeper's CEL driver pays its fixed cost per constraint once instead of once per
// feature. BenchmarkCombined measures it next to the product's one template per feature.

// combinedObjects folds the rendered templates and constraints into one CEL-only template
// and constraint per group of constraints sharing enforcementAction and match. The shared
// variables of lib/psc.cel.yaml that do not depend on the parameters are kept once; those
// that do, and each feature's own variables, are copied per feature under the prefix
// "<feature>_", with variables.params replaced by the feature's entry of the combined
// parameters. Each feature keeps its own validation, so each still yields its own message.
//
// With shareExemptions, when every constraint of a group has the same exemptImages, the
// library variables are kept once, reading exemptImages from a top-level parameter (so the
// containers to check are computed once per request), and only `parameters` is per feature.
func combinedObjects(tb testing.TB, rendered templates.Inventory, shareExemptions bool) []*unstructured.Unstructured {
	tb.Helper()
	libVars := celLibraryVariables(tb)
	perFeatureLib := paramDependentVariables(libVars)

	templateByKind := map[string]*unstructured.Unstructured{}
	for _, t := range rendered.Objects(templates.RoleTemplate) {
		kind, _, _ := unstructured.NestedString(t.Object, "spec", "crd", "spec", "names", "kind")
		templateByKind[kind] = t
	}
	type group struct {
		action, match string
		matchObj      interface{}
		cons          []*unstructured.Unstructured
	}
	var groups []*group
	for _, c := range rendered.Objects(templates.RoleConstraint) {
		action, _, _ := unstructured.NestedString(c.Object, "spec", "enforcementAction")
		matchObj, _, _ := unstructured.NestedFieldCopy(c.Object, "spec", "match")
		m, err := json.Marshal(matchObj)
		if err != nil {
			tb.Fatal(err)
		}
		i := slices.IndexFunc(groups, func(g *group) bool { return g.action == action && g.match == string(m) })
		if i < 0 {
			groups = append(groups, &group{action: action, match: string(m), matchObj: matchObj})
			i = len(groups) - 1
		}
		groups[i].cons = append(groups[i].cons, c)
	}

	var objs []*unstructured.Unstructured
	for gi, g := range groups {
		kind := fmt.Sprintf("PSCBenchCombined%d", gi)
		// notShared: library variables not kept once; paramDependent: those copied per feature.
		notShared, paramDependent := perFeatureLib, perFeatureLib
		exempt, shared := commonExemptImages(g.cons)
		shared = shared && shareExemptions
		if shared {
			// Kept once, reading the combined parameters (exemptImages at the top level);
			// each feature still gets its own `parameters`.
			notShared, paramDependent = map[string]bool{}, map[string]bool{"parameters": true}
		}
		vars := []interface{}{}
		for _, v := range libVars {
			if !notShared[v.Name] {
				vars = append(vars, map[string]interface{}{"name": v.Name, "expression": v.Expression})
			}
		}
		var validations []interface{}
		schemaProps := map[string]interface{}{}
		params := map[string]interface{}{}
		for _, c := range g.cons {
			feature := c.GetLabels()[templates.LabelFeature]
			tmpl := templateByKind[c.GetKind()]
			if feature == "" || tmpl == nil {
				tb.Fatalf("constraint %s: no feature label or template", c.GetName())
			}
			prefix := feature + "_"
			own := ownCELVariables(tb, tmpl, len(libVars))
			rename := map[string]bool{}
			for name := range paramDependent {
				rename[name] = true
			}
			for _, v := range own {
				rename[v.Name] = true
			}
			rewrite := func(expr string) string {
				expr = paramsRef.ReplaceAllString(expr, "(variables.params == null ? null : variables.params.?"+feature+".orValue(null))")
				return variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
					name := strings.TrimPrefix(ref, "variables.")
					if rename[name] {
						return "variables." + prefix + name
					}
					return ref
				})
			}
			for _, v := range libVars {
				if paramDependent[v.Name] {
					vars = append(vars, map[string]interface{}{"name": prefix + v.Name, "expression": rewrite(v.Expression)})
				}
			}
			for _, v := range own {
				vars = append(vars, map[string]interface{}{"name": prefix + v.Name, "expression": rewrite(v.Expression)})
			}
			validations = append(validations, map[string]interface{}{
				"expression":        "size(variables." + prefix + "violations) == 0",
				"messageExpression": "variables." + prefix + `violations.distinct().join("; ")`,
			})
			schema, _, _ := unstructured.NestedFieldCopy(tmpl.Object, "spec", "crd", "spec", "validation", "openAPIV3Schema")
			if schema == nil {
				schema = map[string]interface{}{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
			}
			schemaProps[feature] = schema
			p, _, _ := unstructured.NestedFieldCopy(c.Object, "spec", "parameters")
			if p == nil {
				p = map[string]interface{}{}
			}
			params[feature] = p
		}
		if shared {
			params["exemptImages"] = exempt
			schemaProps["exemptImages"] = map[string]interface{}{"type": "array", "items": map[string]interface{}{"type": "string"}}
		}
		objs = append(objs, &unstructured.Unstructured{Object: map[string]interface{}{
			"apiVersion": templates.TemplateGVK.GroupVersion().String(),
			"kind":       "ConstraintTemplate",
			"metadata":   map[string]interface{}{"name": strings.ToLower(kind)},
			"spec": map[string]interface{}{
				"crd": map[string]interface{}{"spec": map[string]interface{}{
					"names":      map[string]interface{}{"kind": kind},
					"validation": map[string]interface{}{"openAPIV3Schema": map[string]interface{}{"type": "object", "properties": schemaProps}},
				}},
				"targets": []interface{}{map[string]interface{}{
					"target": "admission.k8s.gatekeeper.sh",
					"code": []interface{}{map[string]interface{}{"engine": "K8sNativeValidation", "source": map[string]interface{}{
						"variables":     vars,
						"validations":   validations,
						"failurePolicy": "Fail",
						"generateVAP":   false,
					}}},
				}},
			},
		}}, &unstructured.Unstructured{Object: map[string]interface{}{
			"apiVersion": templates.ConstraintGroupVersion.String(),
			"kind":       kind,
			"metadata":   map[string]interface{}{"name": "combined"},
			"spec": map[string]interface{}{
				"enforcementAction": g.action,
				"match":             g.matchObj,
				"parameters":        params,
			},
		}})
	}
	return objs
}

// commonExemptImages is the exemptImages every constraint of the group has, if they are all
// equal (a constraint without the parameter counts as an empty list).
func commonExemptImages(cons []*unstructured.Unstructured) ([]interface{}, bool) {
	var first []interface{}
	for i, c := range cons {
		list, _, _ := unstructured.NestedSlice(c.Object, "spec", "parameters", "exemptImages")
		if list == nil {
			list = []interface{}{}
		}
		if i == 0 {
			first = list
			continue
		}
		a, _ := json.Marshal(first)
		b, _ := json.Marshal(list)
		if string(a) != string(b) {
			return nil, false
		}
	}
	return first, true
}

var (
	paramsRef   = regexp.MustCompile(`\bvariables\.params\b`)
	variableRef = regexp.MustCompile(`\bvariables\.[A-Za-z_][A-Za-z0-9_]*`)
)

type celVariable struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
}

func celLibraryVariables(tb testing.TB) []celVariable {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("lib", "psc.cel.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var lib struct {
		Variables []celVariable `json:"variables"`
	}
	if err := yaml.Unmarshal(data, &lib); err != nil {
		tb.Fatal(err)
	}
	return lib.Variables
}

// paramDependentVariables are the library variables that read variables.params, directly or
// through another library variable.
func paramDependentVariables(lib []celVariable) map[string]bool {
	dep := map[string]bool{}
	for _, v := range lib {
		if paramsRef.MatchString(v.Expression) {
			dep[v.Name] = true
			continue
		}
		for _, ref := range variableRef.FindAllString(v.Expression, -1) {
			if dep[strings.TrimPrefix(ref, "variables.")] {
				dep[v.Name] = true
				break
			}
		}
	}
	return dep
}

// ownCELVariables are the variables a rendered template adds after the shared library's.
func ownCELVariables(tb testing.TB, tmpl *unstructured.Unstructured, libCount int) []celVariable {
	tb.Helper()
	targets, _, _ := unstructured.NestedSlice(tmpl.Object, "spec", "targets")
	for _, t := range targets {
		code, _, _ := unstructured.NestedSlice(t.(map[string]interface{}), "code")
		for _, c := range code {
			entry := c.(map[string]interface{})
			if entry["engine"] != templates.EngineCEL {
				continue
			}
			vars, _, _ := unstructured.NestedSlice(entry, "source", "variables")
			var out []celVariable
			for _, v := range vars[libCount:] {
				m := v.(map[string]interface{})
				out = append(out, celVariable{Name: m["name"].(string), Expression: m["expression"].(string)})
			}
			return out
		}
	}
	tb.Fatalf("template %s has no %s code", tmpl.GetName(), templates.EngineCEL)
	return nil
}

// BenchmarkCombined compares the product's layout (one CEL template and constraint per
// feature, 17 for the full sample) with the prototype folding them into one per enforcement
// action, on the full sample's pods. Before measuring it checks that the prototype reports
// exactly the product's messages on both pods.
func BenchmarkCombined(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "config", "samples", "policy_v1alpha1_podsecurityconstraints_full.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	psc, err := loadSpec(b, data)
	if err != nil {
		b.Fatal(err)
	}
	rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	perFeature, err := policytest.NewWithEngine(ctx, policytest.EngineCEL, rendered.Objects(templates.RoleTemplate, templates.RoleConstraint))
	if err != nil {
		b.Fatal(err)
	}
	combinedObjs := combinedObjects(b, rendered, false)
	combined, err := policytest.NewWithEngine(ctx, policytest.EngineCEL, combinedObjs)
	if err != nil {
		b.Fatal(err)
	}
	shared, err := policytest.NewWithEngine(ctx, policytest.EngineCEL, combinedObjects(b, rendered, true))
	if err != nil {
		b.Fatal(err)
	}
	gated, err := policytest.NewWithEngine(ctx, policytest.EngineCEL, gatedObjects(b, rendered.Objects(templates.RoleTemplate, templates.RoleConstraint)))
	if err != nil {
		b.Fatal(err)
	}
	sharedGated, err := policytest.NewWithEngine(ctx, policytest.EngineCEL, gatedObjects(b, combinedObjects(b, rendered, true)))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("per-feature: %d constraints; combined: %d", len(rendered.Objects(templates.RoleConstraint)), len(combinedObjs)/2)
	for _, name := range []string{"compliant", "all-violating"} {
		pod := readObject(b, filepath.Join("testdata", "pods", name+".yaml"))
		req := policytest.Request{Object: pod, Namespace: "shop"}
		want, err := perFeature.Review(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		for _, ev := range []*policytest.Evaluator{combined, shared, gated, sharedGated} {
			got, err := ev.Review(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if w, g := policytest.Messages(want), policytest.Messages(got); !slices.Equal(w, g) {
				b.Fatalf("%s pod: the combined prototype reports\n%s\nthe product\n%s", name, strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
		}
		b.Run("per-feature/"+name, func(b *testing.B) { benchReview(b, perFeature, []map[string]interface{}{pod}) })
		b.Run("combined/"+name, func(b *testing.B) { benchReview(b, combined, []map[string]interface{}{pod}) })
		b.Run("combined-shared/"+name, func(b *testing.B) { benchReview(b, shared, []map[string]interface{}{pod}) })
		b.Run("per-feature-gated/"+name, func(b *testing.B) { benchReview(b, gated, []map[string]interface{}{pod}) })
		b.Run("combined-shared-gated/"+name, func(b *testing.B) { benchReview(b, sharedGated, []map[string]interface{}{pod}) })
	}
}

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

// BenchmarkPerFeature is each feature of the full sample alone (one CEL template and its
// constraint, as Gatekeeper runs it by default) on both pods: compared with
// BenchmarkConstraintCount/K8sNativeValidation/1 it gives the cost of each feature's
// expressions beyond the fixed cost of a constraint.
func BenchmarkPerFeature(b *testing.B) {
	rendered := fullSampleRendered(b)
	for _, feature := range rendered.Features() {
		var objs []*unstructured.Unstructured
		for _, role := range []templates.Role{templates.RoleTemplate, templates.RoleConstraint} {
			o, ok := rendered.Find(role, feature)
			if !ok {
				b.Fatalf("feature %s: no %v rendered", feature, role)
			}
			objs = append(objs, o)
		}
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

// TestCombinedPrototypeMatchesCases backs BenchmarkCombined's figures: on every case of
// every feature's cases.yaml, rendered with the case's spec, both combined prototypes report
// exactly the messages of the product's one template per feature (CEL). It only runs with
// PSC_BENCH_PROTOTYPE set (make bench does), as it checks benchmark-only code.
func TestCombinedPrototypeMatchesCases(t *testing.T) {
	if os.Getenv("PSC_BENCH_PROTOTYPE") == "" {
		t.Skip("PSC_BENCH_PROTOTYPE is not set: checks the benchmark-only prototype (make bench runs it)")
	}
	ctx := context.Background()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	type layouts struct{ product, combined, shared, gated, sharedGated *policytest.Evaluator }
	cache := map[string]layouts{}
	load := func(t *testing.T, spec map[string]interface{}) layouts {
		key, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		if l, ok := cache[string(key)]; ok {
			return l
		}
		var specCopy map[string]interface{}
		if err := json.Unmarshal(key, &specCopy); err != nil {
			t.Fatal(err)
		}
		psc, errs := v.DefaultAndValidate(ctx, map[string]interface{}{
			"apiVersion": "policy.podsecurity.dev/v1alpha1", "kind": "PodSecurityConstraints",
			"metadata": map[string]interface{}{"name": "cluster"}, "spec": specCopy,
		})
		if len(errs) > 0 {
			t.Fatalf("case spec is invalid: %v", errs.ToAggregate())
		}
		rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		ev := func(objs []*unstructured.Unstructured) *policytest.Evaluator {
			e, err := policytest.NewWithEngine(ctx, policytest.EngineCEL, objs)
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
		l := layouts{
			product:     ev(rendered.Objects(templates.RoleTemplate, templates.RoleConstraint)),
			combined:    ev(combinedObjects(t, rendered, false)),
			shared:      ev(combinedObjects(t, rendered, true)),
			gated:       ev(gatedObjects(t, rendered.Objects(templates.RoleTemplate, templates.RoleConstraint))),
			sharedGated: ev(gatedObjects(t, combinedObjects(t, rendered, true))),
		}
		cache[string(key)] = l
		return l
	}
	n := 0
	for _, f := range templates.Features() {
		cases, err := policytest.LoadCases(filepath.Join(f.Name, "cases.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(f.Name+"/"+c.Name, func(t *testing.T) {
				l := load(t, c.SpecFor(f.Name))
				req := policytest.Request{
					Operation: c.Operation, SubResource: c.SubResource, Namespace: c.Namespace,
					Object: c.Object, OldObject: c.OldObject, Generated: c.Generated,
				}
				review := func(ev *policytest.Evaluator) []string {
					got, err := ev.Review(ctx, req)
					if err != nil {
						t.Fatalf("review: %v", err)
					}
					return policytest.Messages(got)
				}
				want := review(l.product)
				for name, ev := range map[string]*policytest.Evaluator{"combined": l.combined, "combined-shared": l.shared, "gated": l.gated, "combined-shared-gated": l.sharedGated} {
					if got := review(ev); !slices.Equal(got, want) {
						t.Errorf("%s prototype:\n got: %q\nwant: %q", name, got, want)
					}
				}
			})
			n++
		}
	}
	t.Logf("%d cases, %d distinct specs", n, len(cache))
}

// gatedObjects returns copies of objs whose CEL code gets a matchCondition that is true only
// when the template finds a violation (every `*violations` variable of the source, or-ed).
// Gatekeeper's CEL driver, like the API server's ValidatingAdmissionPolicy code, evaluates a
// template's validations, then all its messageExpressions, then its audit annotations, each
// with a fresh activation (the request converted again) and fresh variables; a false match
// condition ends the evaluation after the first. Benchmark-only: a VAP's matchConditions
// cannot read variables, so this could not be generated as a VAP.
func gatedObjects(tb testing.TB, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	tb.Helper()
	var out []*unstructured.Unstructured
	for _, o := range objs {
		o = o.DeepCopy()
		out = append(out, o)
		if o.GetKind() != "ConstraintTemplate" {
			continue
		}
		targets, _, _ := unstructured.NestedSlice(o.Object, "spec", "targets")
		for _, t := range targets {
			code, _ := t.(map[string]interface{})["code"].([]interface{})
			for _, c := range code {
				entry := c.(map[string]interface{})
				if entry["engine"] != templates.EngineCEL {
					continue
				}
				source := entry["source"].(map[string]interface{})
				var terms []string
				for _, v := range source["variables"].([]interface{}) {
					if name := v.(map[string]interface{})["name"].(string); strings.HasSuffix(name, "violations") {
						terms = append(terms, "size(variables."+name+") > 0")
					}
				}
				if len(terms) == 0 {
					tb.Fatalf("template %s: no violations variable", o.GetName())
				}
				source["matchCondition"] = []interface{}{map[string]interface{}{
					"name": "psc-has-violations", "expression": strings.Join(terms, " || "),
				}}
			}
		}
		if err := unstructured.SetNestedSlice(o.Object, targets, "spec", "targets"); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}
