package templates_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

const vapSpec = `{excludedNamespaces: [team-*], validatingAdmissionPolicy: {enabled: true},
  hostNamespaces: {enabled: true, excludedNamespaces: [legacy]},
  privilegedContainers: {enabled: true, enforcementAction: warn},
  hostProcess: {enabled: true, enforcementAction: dryrun}}`

// TestRenderValidatingAdmissionPolicy: every constraint is scoped to its enforcement points
// (so that Gatekeeper's default of binding every constraint to a policy never applies); with
// spec.validatingAdmissionPolicy.enabled every template asks Gatekeeper for a policy, deny and
// dryrun are also bound on vap.k8s.io (warn stays on the webhook), and kube-system and the
// probe's namespace join the exclusions. Without it, no policy and no vap.k8s.io.
func TestRenderValidatingAdmissionPolicy(t *testing.T) {
	on := renderSpec(t, vapSpec)
	off := renderSpec(t, strings.Replace(vapSpec, "validatingAdmissionPolicy: {enabled: true},", "", 1))
	for _, tc := range []struct {
		feature, action string
		points          []string
	}{
		{"hostNamespaces", "deny", []string{templates.EnforcementPointWebhook, templates.EnforcementPointAudit, templates.EnforcementPointGator, templates.EnforcementPointVAP}},
		{"privilegedContainers", "warn", []string{templates.EnforcementPointWebhook, templates.EnforcementPointAudit, templates.EnforcementPointGator}},
		{"hostProcess", "dryrun", []string{templates.EnforcementPointWebhook, templates.EnforcementPointAudit, templates.EnforcementPointGator, templates.EnforcementPointVAP}},
	} {
		t.Run(tc.feature, func(t *testing.T) {
			for _, mode := range []struct {
				name string
				inv  templates.Inventory
				vap  bool
			}{{"on", on, true}, {"off", off, false}} {
				tmpl, _ := mode.inv.Find(templates.RoleTemplate, tc.feature)
				con, _ := mode.inv.Find(templates.RoleConstraint, tc.feature)
				if got := generateVAP(t, tmpl); got != mode.vap {
					t.Errorf("%s: generateVAP = %v, want %v", mode.name, got, mode.vap)
				}
				// The gate (a match condition reading variables) only without a policy in the
				// API server, whose match conditions cannot read variables.
				if got := len(celMatchConditions(tmpl)); got != map[bool]int{true: 0, false: 1}[mode.vap] {
					t.Errorf("%s: %d match conditions", mode.name, got)
				}
				if got := templates.ConstraintAction(con); got != tc.action {
					t.Errorf("%s: action %q, want %q", mode.name, got, tc.action)
				}
				raw, _, _ := unstructured.NestedString(con.Object, "spec", "enforcementAction")
				scoped, found, _ := unstructured.NestedSlice(con.Object, "spec", "scopedEnforcementActions")
				excluded, _, _ := unstructured.NestedStringSlice(con.Object, "spec", "match", "excludedNamespaces")
				wantPoints := tc.points
				if !mode.vap {
					wantPoints = slices.DeleteFunc(slices.Clone(tc.points), func(p string) bool { return p == templates.EnforcementPointVAP })
					if slices.Contains(excluded, "psc-probe") || slices.Contains(excluded, "kube-system") || templates.BindsVAP(con) {
						t.Errorf("off: excluded %v, binds %v", excluded, templates.BindsVAP(con))
					}
				}
				if raw != "scoped" || !found || len(scoped) != 1 {
					t.Fatalf("%s: enforcementAction %q with %v, want scoped with one entry", mode.name, raw, scoped)
				}
				entry, _ := scoped[0].(map[string]interface{})
				var points []string
				eps, _ := entry["enforcementPoints"].([]interface{})
				for _, ep := range eps {
					points = append(points, ep.(map[string]interface{})["name"].(string))
				}
				if entry["action"] != tc.action || !slices.Equal(points, wantPoints) {
					t.Errorf("%s: scoped %v on %v, want %s on %v", mode.name, entry["action"], points, tc.action, wantPoints)
				}
				if !mode.vap {
					continue
				}
				if templates.BindsVAP(con) != templates.VAPBinds(tc.action) {
					t.Errorf("on: BindsVAP %v for %s", templates.BindsVAP(con), tc.action)
				}
				for _, ns := range []string{"team-*", "psc-system", "gatekeeper-system", "kube-system", "psc-probe"} {
					if !slices.Contains(excluded, ns) {
						t.Errorf("on: %s not excluded: %v", ns, excluded)
					}
				}
				if (tc.feature == "hostNamespaces") != slices.Contains(excluded, "legacy") {
					t.Errorf("on: the feature's own exclusion: %v", excluded)
				}
			}
		})
	}
}

// TestVAPConstraintsOnTheWebhook: the scoped constraints give Gatekeeper's webhook the same
// verdicts as before (the webhook point keeps every action), on both engines.
func TestVAPConstraintsOnTheWebhook(t *testing.T) {
	inv := renderSpec(t, vapSpec)
	ctx := context.Background()
	pod := func(ns string) map[string]interface{} {
		return map[string]interface{}{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]interface{}{"name": "p", "namespace": ns},
			"spec": map[string]interface{}{"hostPID": true, "containers": []interface{}{map[string]interface{}{
				"name": "app", "image": "nginx", "securityContext": map[string]interface{}{"privileged": true}}}},
		}
	}
	for _, engine := range policytest.Engines() {
		ev, err := policytest.NewWithEngine(ctx, engine, inv.Objects(templates.RoleTemplate, templates.RoleConstraint))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ev.Review(ctx, policytest.Request{Object: pod("shop")})
		if err != nil {
			t.Fatal(err)
		}
		var summary []string
		for _, v := range got {
			summary = append(summary, v.Constraint+" "+v.EnforcementAction)
		}
		want := []string{"psc-host-namespaces deny", "psc-warn warn"}
		if !slices.Equal(summary, want) {
			t.Errorf("%s: %v, want %v", engine, summary, want)
		}
		for _, ns := range []string{"kube-system", "psc-probe", "team-a"} {
			got, err := ev.Review(ctx, policytest.Request{Object: pod(ns)})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Errorf("%s: namespace %s is checked: %v", engine, ns, got)
			}
		}
	}
}

func celMatchConditions(tmpl *unstructured.Unstructured) []interface{} {
	targets, _, _ := unstructured.NestedSlice(tmpl.Object, "spec", "targets")
	code, _, _ := unstructured.NestedSlice(targets[0].(map[string]interface{}), "code")
	for _, c := range code {
		if entry := c.(map[string]interface{}); entry["engine"] == templates.EngineCEL {
			mcs, _, _ := unstructured.NestedSlice(entry, "source", "matchCondition")
			return mcs
		}
	}
	return nil
}

func generateVAP(t *testing.T, tmpl *unstructured.Unstructured) bool {
	t.Helper()
	targets, _, _ := unstructured.NestedSlice(tmpl.Object, "spec", "targets")
	code, _, _ := unstructured.NestedSlice(targets[0].(map[string]interface{}), "code")
	for _, c := range code {
		entry := c.(map[string]interface{})
		if entry["engine"] == templates.EngineCEL {
			v, found, _ := unstructured.NestedBool(entry, "source", "generateVAP")
			if !found {
				t.Fatal("generateVAP is not set")
			}
			return v
		}
	}
	t.Fatal("no CEL code")
	return false
}
