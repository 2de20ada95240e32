//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/controllers"
)

// admissionBudget is the promise: within 60 s of Gatekeeper stopping, the CR says that
// pods are admitted unchecked; within 60 s of Gatekeeper returning, Ready again.
const admissionBudget = 60 * time.Second

// TestAdmissionGatekeeperKilled: Gatekeeper's process dies while its webhook stays registered
// (failurePolicy Ignore, the chart's default). A violating pod is then admitted, and the CR
// must say so within 60 s; once Gatekeeper is back, Ready again within 60 s.
func TestAdmissionGatekeeperKilled(t *testing.T) {
	testAdmissionLost(t, "killed", func(t *testing.T) {
		killGatekeeper(t)
		if !gatekeeperWebhookRegistered(t) {
			t.Fatal("the webhook configuration is gone: this scenario needs it registered")
		}
	})
}

// TestAdmissionGatekeeperUninstalled: Gatekeeper's webhook configuration is deleted and its
// process stopped (its CRDs, templates and constraints stay, as after `helm uninstall` of a
// release whose CRDs are kept).
func TestAdmissionGatekeeperUninstalled(t *testing.T) {
	testAdmissionLost(t, "uninstalled", func(t *testing.T) {
		runClusterScript(t, "gatekeeper-stop")
		if gatekeeperWebhookRegistered(t) {
			t.Fatal("the webhook configuration is still registered after gatekeeper-stop")
		}
	})
}

func testAdmissionLost(t *testing.T, what string, stop func(*testing.T)) {
	startScenario(t)
	restoreGatekeeper(t)
	ns := newNamespace(t, "adm-"+what)

	gen := setSpec(t, map[string]interface{}{
		"hostNamespaces":       map[string]interface{}{"enabled": true},
		"privilegedContainers": map[string]interface{}{"enabled": true},
	})
	waitReady(t, gen, enforceTimeout)
	cr := mustGetCR(t)
	if msg := readyCondition(cr).Message; !strings.Contains(msg, "a probe pod verifies that admission denies violations") {
		t.Errorf("Ready=True does not rest on the probe: %q", msg)
	}
	_, err := createPod(hostPIDPod(ns, "before"))
	expectDenied(t, "hostPID pod while Gatekeeper runs", err, hostPIDMessage)
	warningsBefore := countCREvents(t, controllers.ReasonAdmissionNotEnforced)

	stop(t)
	stopped := time.Now()
	// Nothing judges pods now: the violating pod is admitted.
	_, err = createPod(hostPIDPod(ns, "while-down"))
	expectAdmitted(t, fmt.Sprintf("hostPID pod with Gatekeeper %s (failurePolicy Ignore)", what), err)

	eventually(t, admissionBudget, "Ready=False (AdmissionNotEnforced)", func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		status, reason := readyReason(cr)
		return status == metav1.ConditionFalse && reason == controllers.ReasonAdmissionNotEnforced, describeCR(cr)
	})
	t.Logf("ADMISSION LOST (Gatekeeper %s): Ready=False/AdmissionNotEnforced %s after the stop (budget %s)", what,
		time.Since(stopped).Round(100*time.Millisecond), admissionBudget)
	cr = mustGetCR(t)
	if msg := readyCondition(cr).Message; !strings.Contains(msg, "Pods are admitted unchecked") {
		t.Errorf("the message does not say that pods are admitted unchecked: %q", msg)
	}
	for _, name := range []string{"hostNamespaces", "privilegedContainers"} {
		if fs, _ := featureStatus(cr, name); fs.State != v1alpha1.FeatureNotEnforced || fs.Enforced {
			t.Errorf("%s: state %s enforced=%v, want NotEnforced", name, fs.State, fs.Enforced)
		}
	}
	if cr.Status.EnforcedFeatures != 0 {
		t.Errorf("enforcedFeatures = %d, want 0", cr.Status.EnforcedFeatures)
	}
	// One warning event, and it stays one while the outage lasts (two more probe rounds).
	time.Sleep(35 * time.Second)
	if n := countCREvents(t, controllers.ReasonAdmissionNotEnforced) - warningsBefore; n != 1 {
		t.Errorf("%d new %s events, want exactly 1", n, controllers.ReasonAdmissionNotEnforced)
	}
	if status, reason := readyReason(mustGetCR(t)); status != metav1.ConditionFalse || reason != controllers.ReasonAdmissionNotEnforced {
		t.Errorf("the status moved during the outage: Ready=%s/%s", status, reason)
	}

	// Gatekeeper returns: the command returns once Gatekeeper is ready and the API server
	// reaches its webhook; from then on, Ready within 60 s.
	start := time.Now()
	restartGatekeeper(t)
	back := time.Now()
	eventually(t, admissionBudget, "Ready=True again", func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		return isReady(cr, gen), describeCR(cr)
	})
	t.Logf("ADMISSION RESTORED (Gatekeeper %s): Ready=True %s after Gatekeeper was back (gatekeeper-start took %s; budget %s)", what,
		time.Since(back).Round(100*time.Millisecond), back.Sub(start).Round(100*time.Millisecond), admissionBudget)
	_, err = createPod(hostPIDPod(ns, "after"))
	expectDenied(t, "hostPID pod after Gatekeeper is back", err, hostPIDMessage)
}

func readyCondition(cr *v1alpha1.PodSecurityConstraints) metav1.Condition {
	if c := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// countCREvents counts the events about the CR with a reason.
func countCREvents(t *testing.T, reason string) int {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(context.Background(), list); err != nil {
		t.Fatalf("listing events: %v", err)
	}
	n := 0
	for _, e := range list.Items {
		if e.Regarding.Kind == "PodSecurityConstraints" && e.Reason == reason {
			n++
		}
	}
	return n
}

// killGatekeeper sends SIGKILL to the local cluster's Gatekeeper process (its pid file under
// bin/local/pids), leaving its webhook configuration registered, and waits until it is gone.
func killGatekeeper(t *testing.T) {
	t.Helper()
	localDir := os.Getenv("LOCAL_DIR")
	if localDir == "" {
		localDir = filepath.Join(repoRoot, "bin", "local")
	}
	data, err := os.ReadFile(filepath.Join(localDir, "pids", "gatekeeper.pid"))
	if err != nil {
		t.Fatalf("reading Gatekeeper's pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("Gatekeeper's pid file: %v", err)
	}
	// Only our own cluster's Gatekeeper: its command line names our state directory.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "gatekeeper") || !strings.Contains(string(cmdline), localDir) {
		t.Fatalf("pid %d is not this cluster's Gatekeeper (%v): %q", pid, err, strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing Gatekeeper (pid %d): %v", pid, err)
	}
	eventually(t, 10*time.Second, "Gatekeeper's process to exit", func() (bool, string) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return os.IsNotExist(err), fmt.Sprintf("pid %d still there", pid)
	})
}

func gatekeeperWebhookRegistered(t *testing.T) bool {
	t.Helper()
	out, err := kubectl(context.Background(), "get", "validatingwebhookconfiguration", "-o", "name")
	if err != nil {
		t.Fatalf("listing webhook configurations: %v\n%s", err, out)
	}
	return strings.Contains(out, "gatekeeper-validating-webhook-configuration")
}

// restartGatekeeper runs `hack/cluster-up.sh gatekeeper-start`, again when Gatekeeper could not
// bind its ports: they lie in Linux's ephemeral range (32768-60999), and in the minute after a
// stop an outgoing connection or another test's server may hold one of them for a while.
func restartGatekeeper(t *testing.T) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		out, err := clusterScript(ctx, "gatekeeper-start")
		cancel()
		if err == nil {
			return
		}
		if attempt == 5 || !strings.Contains(out, "already in use") {
			t.Fatalf("hack/cluster-up.sh gatekeeper-start: %v\n%s", err, out)
		}
		t.Logf("gatekeeper-start: a port was in use (attempt %d); retrying in 5s", attempt)
		time.Sleep(5 * time.Second)
	}
}
