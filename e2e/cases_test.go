//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podsecurity/psc-operator/templates/policytest"
)

// policyCase is one entry of a feature's templates/<feature>/cases.yaml, read with the same
// strict loader as the policy suite.
type policyCase struct{ policytest.Case }

// loadCases reads a feature's cases.yaml from the templates folder of this repository.
func loadCases(t testing.TB, feature string) []policyCase {
	t.Helper()
	cases, err := policytest.LoadCases(filepath.Join(repoRoot, "templates", feature, "cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]policyCase, len(cases))
	for i, c := range cases {
		out[i] = policyCase{c}
	}
	return out
}

// specOf is the CR spec a case is evaluated with: its own, or the feature alone, enabled.
func (c policyCase) specOf(feature string) map[string]interface{} {
	return deepCopyMap(c.SpecFor(feature))
}

// isCreate: a case that models a plain pod creation in a namespace nobody excludes. Only such
// cases can be replayed as-is by creating a pod in a fresh namespace.
func (c policyCase) isCreate() bool {
	return (c.Operation == "" || c.Operation == "CREATE") && c.SubResource == "" && c.Namespace == "" && c.OldObject == nil && !c.Generated
}

// isDeniedCreate: a creation case the policy denies (enforcement action deny).
func (c policyCase) isDeniedCreate() bool {
	return c.isCreate() && len(c.Violations) > 0 && (c.EnforcementAction == "" || c.EnforcementAction == "deny")
}

// isAllowedCreate: a creation case the policy admits.
func (c policyCase) isAllowedCreate() bool {
	return c.isCreate() && len(c.Violations) == 0
}

// pod turns the case's object into a Pod named name in namespace ns.
func (c policyCase) pod(ns, name string) (*corev1.Pod, error) {
	data, err := json.Marshal(c.Object)
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(data, pod); err != nil {
		return nil, fmt.Errorf("case %q: object is not a Pod: %w", c.Name, err)
	}
	pod.APIVersion, pod.Kind = "v1", "Pod"
	pod.Namespace, pod.Name = ns, name
	pod.ResourceVersion, pod.UID = "", ""
	return pod, nil
}

func deepCopyMap(m map[string]interface{}) map[string]interface{} {
	if m == nil {
		return nil
	}
	data, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	out := map[string]interface{}{}
	if err := json.Unmarshal(data, &out); err != nil {
		panic(err)
	}
	return out
}

func sameSpec(a, b map[string]interface{}) bool {
	return reflect.DeepEqual(deepCopyMap(a), deepCopyMap(b))
}
