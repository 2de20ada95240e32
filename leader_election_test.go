package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func TestLeaderElectionFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--leader-elect"}, true},
		{[]string{"--leader-elect=false"}, false},
	} {
		f, err := parseManagerFlags(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if f.leaderElect != tc.want {
			t.Errorf("%v: leader election %v, want %v", tc.args, f.leaderElect, tc.want)
		}
	}
	t.Setenv("POD_NAMESPACE", "ops")
	f, err := parseManagerFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.leaderElectionNS != "ops" {
		t.Errorf("lease namespace %q, want the operator's namespace from POD_NAMESPACE", f.leaderElectionNS)
	}
}

// TestMissingLeaseNamespaceStopsStartup runs the manager with leader election against a real
// API server where the lease namespace does not exist: it must stop at once with a clear
// error instead of retrying the lease forever.
func TestMissingLeaseNamespaceStopsStartup(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which provides kube-apiserver and etcd")
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = runManager(ctx, []string{"--kubeconfig=" + kubeconfig, "--leader-elect", "--leader-election-namespace=psc-missing",
		"--metrics-bind-address=0", "--health-probe-bind-address=0"})
	if ctx.Err() != nil {
		t.Fatal("the manager ran until the test's deadline instead of stopping with an error")
	}
	want := `leader election: the lease namespace "psc-missing" does not exist`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}

	if err := checkLeaseNamespace(ctx, cfg, "default", leaderElectionID); err != nil {
		t.Errorf("existing namespace: %v", err)
	}
	if err := checkLeaseNamespace(ctx, cfg, "", leaderElectionID); err == nil {
		t.Error("an empty namespace passed the check")
	}
}
