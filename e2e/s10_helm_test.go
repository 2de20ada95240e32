//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHelmChartInstallsServerSide installs the chart in dry-run against the cluster, twice:
// `helm install --dry-run=server` (Helm validates every object with the server's OpenAPI
// schemas and checks for conflicts with what exists) and the rendered objects through
// `kubectl apply --dry-run=server` (the API server runs defaulting, validation and admission,
// Gatekeeper's webhook and Pod Security included, and stores nothing).
func TestHelmChartInstallsServerSide(t *testing.T) {
	startScenario(t)
	helm := os.Getenv("PSC_HELM")
	if helm == "" {
		t.Fatal("PSC_HELM is not set: run with make test-e2e, which builds helm")
	}
	chart := filepath.Join(repoRoot, "charts", "psc-operator")
	ns := newNamespace(t, "helm")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, helm, "install", "psc-operator", chart, "--kubeconfig", kubeconfigPath,
		"--namespace", ns, "--dry-run=server", "--set", "argocd.healthCheck.enabled=true", "--set", "argocd.healthCheck.namespace="+ns,
		// The suite's operator already uses psc-probe (config/probe): a second release may not
		// adopt it, so this one renders the probe's objects in a namespace of its own.
		"--set", "admissionProbe.namespace="+ns+"-probe")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm install --dry-run=server: %v\n%s", err, out)
	}
	for _, want := range []string{"STATUS: pending-install", "kind: Deployment", "kind: ClusterRole\n", "psc-operator-argocd-health"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("helm install output lacks %q:\n%s", want, out)
		}
	}

	// Without the probe's objects: psc-probe exists already with the suite's operator as
	// subject, and a dry-run create cannot put a Role into a namespace that is only dry-run
	// created. The chart's probe objects are compared with config/probe by charts/chart_test.go.
	rendered, err := exec.CommandContext(ctx, helm, "template", "psc-operator", chart, "--namespace", ns, "--kube-version", "v1.36.2",
		"--set", "admissionProbe.enabled=false").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	apply := exec.CommandContext(ctx, kubectlPath, "--kubeconfig", kubeconfigPath, "apply", "--server-side",
		"--dry-run=server", "--field-manager=psc-e2e-helm", "-f", "-")
	apply.Stdin = bytes.NewReader(rendered)
	res, err := apply.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server of the rendered chart: %v\n%s", err, res)
	}
	for _, want := range []string{"deployment.apps/psc-operator serverside-applied (server dry run)",
		"clusterrole.rbac.authorization.k8s.io/psc-operator serverside-applied (server dry run)",
		"role.rbac.authorization.k8s.io/psc-operator-leader-election serverside-applied (server dry run)"} {
		if !strings.Contains(string(res), want) {
			t.Errorf("kubectl apply output lacks %q:\n%s", want, res)
		}
	}
	// Nothing was stored.
	if out, err := kubectl(ctx, "get", "deployment", "psc-operator", "-n", ns); err == nil {
		t.Errorf("the dry run created the Deployment:\n%s", out)
	}
}
