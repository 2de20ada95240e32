//go:build e2e

package e2e

import (
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podsecurity/psc-operator/templates"
)

// TestEngine: the denial shows which of the templates' engines Gatekeeper evaluated. A pod
// with two privileged containers violates privilegedContainers twice: the Rego reports two
// results (two "[psc-deny]" lines, the name of the constraint that enforces it), the CEL code
// one result with both
// messages joined by "; ". PSC_E2E_ENGINE says which to expect: cel (Gatekeeper's default,
// --enable-k8s-native-validation=true) or rego (--enable-k8s-native-validation=false); make
// test-e2e runs the suite on each.
func TestEngine(t *testing.T) {
	engine := os.Getenv("PSC_E2E_ENGINE")
	if engine == "" {
		engine = "cel"
	}
	if engine != "cel" && engine != "rego" {
		t.Fatalf("PSC_E2E_ENGINE=%q: want cel or rego", engine)
	}
	startScenario(t)
	ns := newNamespace(t, "engine")
	gen := setSpec(t, map[string]interface{}{"privilegedContainers": map[string]interface{}{"enabled": true}})
	waitReady(t, gen, enforceTimeout)

	pod := privilegedPod(ns, "two-privileged", "nginx")
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
		Name: "sidecar", Image: "nginx", SecurityContext: &corev1.SecurityContext{Privileged: ptrTo(true)},
	})
	sidecarMessage := `psc/privilegedContainers: container "sidecar" is privileged (securityContext.privileged: true)`
	_, err := createPod(pod)
	expectDenied(t, "pod with two privileged containers", err, privilegedMessage, sidecarMessage)
	if err == nil {
		return
	}
	msg := err.Error()
	results := strings.Count(msg, "["+templates.ConstraintName("deny")+"]")
	joined := strings.Contains(msg, privilegedMessage+"; "+sidecarMessage) || strings.Contains(msg, sidecarMessage+"; "+privilegedMessage)
	t.Logf("engine %s: denial %q", engine, msg)
	switch {
	case engine == "cel" && (results != 1 || !joined):
		t.Errorf("want one result from the CEL code with both messages joined (Gatekeeper evaluates CEL by default), got %d results:\n%s", results, msg)
	case engine == "rego" && (results != 2 || joined):
		t.Errorf("want two results from the Rego (--enable-k8s-native-validation=false), got %d results:\n%s", results, msg)
	}
}
