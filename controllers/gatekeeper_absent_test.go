package controllers

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// TestGatekeeperInstalledLater starts the operator on a cluster without Gatekeeper: the CR
// reports GatekeeperNotInstalled, the operator keeps running, and it converges on its own
// once Gatekeeper's CRDs appear.
func TestGatekeeperInstalledLater(t *testing.T) {
	te := startEnv(t, false)
	applyCR(t, te.client, specWith("privilegedContainers", "hostNamespaces"))
	obj := waitReady(t, te.client, metav1.ConditionFalse, ReasonGatekeeperNotInstalled)
	ready := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
	if !strings.Contains(ready.Message, "Install OPA Gatekeeper") {
		t.Errorf("Ready message %q does not say what to install", ready.Message)
	}
	if obj.Status.EnabledFeatures != 2 {
		t.Errorf("enabled features %d, want 2", obj.Status.EnabledFeatures)
	}

	start := time.Now()
	if _, err := envtest.InstallCRDs(te.cfg, envtest.CRDInstallOptions{Paths: []string{gatekeeperCRDDir(t)}}); err != nil {
		t.Fatalf("installing Gatekeeper's CRDs: %v", err)
	}
	startFakeGatekeeper(t, te.client)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "hostNamespaces"))
	if d := time.Since(start); d > time.Minute {
		t.Errorf("converged after %s, want within a minute", d)
	}
	t.Logf("converged %s after Gatekeeper's CRDs were installed", time.Since(start).Round(100*time.Millisecond))
}
