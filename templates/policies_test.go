package templates_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// TestPolicies runs every feature folder's cases.yaml through the renderer and the real OPA
// engine with Gatekeeper's Kubernetes target.
func TestPolicies(t *testing.T) {
	ctx := context.Background()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	evaluators := map[string]*policytest.Evaluator{}
	for _, f := range templates.Features() {
		t.Run(f.Name, func(t *testing.T) {
			cases, err := policytest.LoadCases(filepath.Join(f.Name, "cases.yaml"))
			if err != nil {
				t.Fatalf("every feature needs a valid cases.yaml: %v", err)
			}
			if len(cases) < 3 {
				t.Fatalf("%s has %d cases; every feature needs allowed and denied cases", f.Name, len(cases))
			}
			denied, allowed := 0, 0
			for _, c := range cases {
				if len(c.Violations) > 0 {
					denied++
				} else {
					allowed++
				}
				t.Run(c.Name, func(t *testing.T) {
					ev := evaluatorFor(ctx, t, v, c.SpecFor(f.Name), evaluators)
					got, err := ev.Review(ctx, policytest.Request{
						Operation: c.Operation, SubResource: c.SubResource, Namespace: c.Namespace,
						Object: c.Object, OldObject: c.OldObject, Generated: c.Generated,
					})
					if err != nil {
						t.Fatalf("review: %v", err)
					}
					var msgs []string
					for _, g := range got {
						msgs = append(msgs, g.Message)
						want := c.EnforcementAction
						if want == "" {
							want = "deny"
						}
						if g.EnforcementAction != want {
							t.Errorf("violation %q has enforcement action %q, want %q", g.Message, g.EnforcementAction, want)
						}
					}
					want := slices.Clone(c.Violations)
					sort.Strings(msgs)
					sort.Strings(want)
					if !slices.Equal(msgs, want) {
						t.Errorf("violations:\n got: %q\nwant: %q", msgs, want)
					}
				})
			}
			if denied == 0 || allowed == 0 {
				t.Errorf("%s needs both allowed (%d) and denied (%d) cases", f.Name, allowed, denied)
			}
		})
	}
}

// evaluatorFor validates, defaults and renders a spec like the operator does and loads the
// result into the engine; evaluators are shared between cases with the same spec.
func evaluatorFor(ctx context.Context, t *testing.T, v *validation.Validator, spec map[string]interface{}, cache map[string]*policytest.Evaluator) *policytest.Evaluator {
	t.Helper()
	key, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if ev, ok := cache[string(key)]; ok {
		return ev
	}
	var specCopy map[string]interface{}
	if err := json.Unmarshal(key, &specCopy); err != nil {
		t.Fatal(err)
	}
	obj := map[string]interface{}{
		"apiVersion": "policy.podsecurity.dev/v1alpha1",
		"kind":       "PodSecurityConstraints",
		"metadata":   map[string]interface{}{"name": "cluster"},
		"spec":       specCopy,
	}
	psc, errs := v.DefaultAndValidate(ctx, obj)
	if len(errs) > 0 {
		t.Fatalf("case spec is invalid: %v", errs.ToAggregate())
	}
	rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := policytest.New(ctx, rendered.Objects(templates.RoleTemplate, templates.RoleConstraint))
	if err != nil {
		t.Fatalf("loading policies into the engine: %v", err)
	}
	cache[string(key)] = ev
	return ev
}

// TestWorkloadReviewsAreCheckedLikeCreations: for every feature, the Pod Gatekeeper generates
// from a workload (an UPDATE or CREATE without oldObject, as an ExpansionTemplate produces it)
// gets exactly the violations a creation of that pod gets, and a violating workload update is
// denied where a metadata update of a stored pod with the same spec is admitted.
func TestWorkloadReviewsAreCheckedLikeCreations(t *testing.T) {
	ctx := context.Background()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	evaluators := map[string]*policytest.Evaluator{}
	messages := func(t *testing.T, ev *policytest.Evaluator, req policytest.Request) []string {
		t.Helper()
		got, err := ev.Review(ctx, req)
		if err != nil {
			t.Fatalf("review: %v", err)
		}
		var out []string
		for _, g := range got {
			out = append(out, g.Message)
		}
		sort.Strings(out)
		return out
	}
	for _, f := range templates.Features() {
		t.Run(f.Name, func(t *testing.T) {
			cases, err := policytest.LoadCases(filepath.Join(f.Name, "cases.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			contrasts := 0
			for _, c := range cases {
				if c.SubResource != "" || c.Generated {
					continue
				}
				ev := evaluatorFor(ctx, t, v, c.SpecFor(f.Name), evaluators)
				created := messages(t, ev, policytest.Request{Operation: "CREATE", Namespace: c.Namespace, Object: c.Object})
				for _, op := range []string{"CREATE", "UPDATE"} {
					got := messages(t, ev, policytest.Request{Operation: op, Namespace: c.Namespace, Object: c.Object, Generated: true})
					if !slices.Equal(got, created) {
						t.Errorf("%s: the expanded workload (%s) got %q, a creation of the pod %q", c.Name, op, got, created)
					}
				}
				if c.Operation == "UPDATE" && c.OldObject != nil && len(c.Violations) == 0 && len(created) > 0 {
					contrasts++
				}
			}
			if contrasts == 0 {
				t.Errorf("%s has no case of a stored violating pod updated (admitted) whose spec, as a workload, is denied", f.Name)
			}
		})
	}
}
