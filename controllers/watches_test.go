package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func constraintYAML(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(s), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestAuditResultsOnly(t *testing.T) {
	base := `
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: PSCCapabilities
metadata: {name: psc-capabilities, resourceVersion: "10", generation: 1, labels: {app.kubernetes.io/managed-by: psc-operator}}
spec: {enforcementAction: deny}
status:
  auditTimestamp: "2026-11-30T10:00:00Z"
  totalViolations: 1
  violations: [{name: a}]
  byPod: [{id: gatekeeper, enforced: true, observedGeneration: 1}]
`
	for _, tc := range []struct {
		name, new string
		want      bool
	}{
		{"audit results only", `
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: PSCCapabilities
metadata: {name: psc-capabilities, resourceVersion: "11", generation: 1, labels: {app.kubernetes.io/managed-by: psc-operator}}
spec: {enforcementAction: deny}
status:
  auditTimestamp: "2026-11-30T10:01:00Z"
  totalViolations: 2
  violations: [{name: a}, {name: b}]
  byPod: [{id: gatekeeper, enforced: true, observedGeneration: 1}]
`, true},
		{"enforcement status of a pod", `
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: PSCCapabilities
metadata: {name: psc-capabilities, resourceVersion: "11", generation: 1, labels: {app.kubernetes.io/managed-by: psc-operator}}
spec: {enforcementAction: deny}
status:
  auditTimestamp: "2026-11-30T10:00:00Z"
  totalViolations: 1
  violations: [{name: a}]
  byPod: [{id: gatekeeper, enforced: true, observedGeneration: 1}, {id: gatekeeper-2, enforced: false, observedGeneration: 1}]
`, false},
		{"spec edited by hand", `
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: PSCCapabilities
metadata: {name: psc-capabilities, resourceVersion: "11", generation: 2, labels: {app.kubernetes.io/managed-by: psc-operator}}
spec: {enforcementAction: dryrun}
status:
  auditTimestamp: "2026-11-30T10:00:00Z"
  totalViolations: 1
  violations: [{name: a}]
  byPod: [{id: gatekeeper, enforced: true, observedGeneration: 1}]
`, false},
		{"labels removed", `
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: PSCCapabilities
metadata: {name: psc-capabilities, resourceVersion: "11", generation: 1}
spec: {enforcementAction: deny}
status:
  auditTimestamp: "2026-11-30T10:01:00Z"
  totalViolations: 1
  violations: [{name: a}]
  byPod: [{id: gatekeeper, enforced: true, observedGeneration: 1}]
`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := auditResultsOnly(constraintYAML(t, base), constraintYAML(t, tc.new)); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTrimForCache(t *testing.T) {
	u := constraintYAML(t, `
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: PSCPodSecurity
metadata:
  name: psc-deny
  labels: {app.kubernetes.io/managed-by: psc-operator}
  annotations: {kubectl.kubernetes.io/last-applied-configuration: "{}"}
  managedFields: [{manager: psc-operator, operation: Apply}]
spec: {enforcementAction: deny}
status:
  violations: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}, {name: f}, {name: g}]
`)
	out, err := trimForCache(u)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*unstructured.Unstructured)
	if got.GetManagedFields() != nil || got.GetAnnotations() != nil {
		t.Errorf("managedFields %v, annotations %v left", got.GetManagedFields(), got.GetAnnotations())
	}
	// The features of a constraint share its violations: all are kept, to be counted per
	// feature (featureViolations).
	if v, _, _ := unstructured.NestedSlice(got.Object, "status", "violations"); len(v) != 7 {
		t.Errorf("%d violations kept, want all 7", len(v))
	}
	if got.GetLabels()["app.kubernetes.io/managed-by"] != "psc-operator" {
		t.Error("labels were dropped")
	}
	if a, _, _ := unstructured.NestedString(got.Object, "spec", "enforcementAction"); a != "deny" {
		t.Error("spec was changed")
	}
}
