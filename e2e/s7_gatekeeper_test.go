//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/controllers"
	"github.com/podsecurity/psc-operator/templates"
)

// runClusterScript runs hack/cluster-up.sh with a subcommand and fails the test if it fails.
func runClusterScript(t testing.TB, args ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := clusterScript(ctx, args...)
	if err != nil {
		t.Fatalf("hack/cluster-up.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return time.Since(start)
}

// startGatekeeperAndWaitReady runs `hack/cluster-up.sh gatekeeper-start` and meanwhile polls the
// CR until it is Ready at generation gen. It returns when Ready was first seen and how long the
// command took, both from the start of the command; Ready may come before the command returns
// (the command's last step registers the webhook and waits for the API server to reach it).
func startGatekeeperAndWaitReady(t testing.TB, gen int64, timeout time.Duration) (ready, command time.Duration) {
	t.Helper()
	type result struct {
		out string
		err error
		d   time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := clusterScript(ctx, "gatekeeper-start")
		done <- result{out, err, time.Since(start)}
	}()
	var cmd *result
	last := ""
	for {
		if cmd == nil {
			select {
			case r := <-done:
				if r.err != nil {
					t.Fatalf("hack/cluster-up.sh gatekeeper-start: %v\n%s", r.err, r.out)
				}
				cmd = &r
			default:
			}
		}
		if ready == 0 {
			cr, err := getCR(context.Background())
			switch {
			case err != nil || cr == nil:
				last = fmt.Sprintf("get: %v", err)
			case isReady(cr, gen):
				ready = time.Since(start)
			default:
				last = describeCR(cr)
			}
		}
		if ready != 0 && cmd != nil {
			return ready, cmd.d
		}
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for Ready=True at generation %d after gatekeeper-start (command finished: %v); last state: %s",
				timeout, gen, cmd != nil, last)
		}
		if err := op.exitError(); err != nil {
			t.Fatalf("while Gatekeeper starts: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restoreGatekeeper is the cleanup of the scenarios that stop Gatekeeper or remove it, for when
// they fail half way: Gatekeeper running (idempotent) and an operator running.
func restoreGatekeeper(t *testing.T) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if out, err := clusterScript(ctx, "gatekeeper-start"); err != nil {
			t.Errorf("cleanup: hack/cluster-up.sh gatekeeper-start: %v\n%s", err, out)
		}
		if !op.running() {
			var err error
			if op, err = startOperator(); err != nil {
				t.Errorf("cleanup: starting the operator again: %v", err)
			}
		}
	})
}

// TestGatekeeperStopped: with Gatekeeper stopped (webhook configuration gone, process stopped,
// CRDs and objects kept), the operator keeps running and reconciling; once Gatekeeper is back,
// everything converges to Ready again.
func TestGatekeeperStopped(t *testing.T) {
	startScenario(t)
	restoreGatekeeper(t)
	ns := newNamespace(t, "gk-stopped")

	gen := setSpec(t, map[string]interface{}{"privilegedContainers": map[string]interface{}{"enabled": true}})
	waitReady(t, gen, enforceTimeout)
	_, err := createPod(privilegedPod(ns, "before-stop", "nginx"))
	expectDenied(t, "privileged pod before Gatekeeper is stopped", err, privilegedMessage)

	runClusterScript(t, "gatekeeper-stop")
	stopped := time.Now()

	// For a few refresh intervals the operator keeps running and the CR stays readable and
	// consistent: the generation stays observed, and Ready is reported.
	var states []string
	for time.Since(stopped) < 3*refreshInterval+time.Second {
		if err := op.exitError(); err != nil {
			t.Fatalf("with Gatekeeper stopped: %v", err)
		}
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			t.Fatalf("reading the CR with Gatekeeper stopped: %v", err)
		}
		status, reason := readyReason(cr)
		if !observed(cr, gen) || status == metav1.ConditionUnknown {
			t.Errorf("status with Gatekeeper stopped is not consistent: %s", describeCR(cr))
		}
		if s := fmt.Sprintf("Ready=%s/%s enforced=%d", status, reason, cr.Status.EnforcedFeatures); len(states) == 0 || states[len(states)-1] != s {
			states = append(states, s)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("status while Gatekeeper is stopped: %v", states)
	// Informational: nothing reviews pods now (the webhook configuration is gone).
	if _, err := createPod(privilegedPod(ns, "while-stopped", "nginx")); err == nil {
		t.Logf("note: a privileged pod is admitted while Gatekeeper is stopped, and the CR says: %s", describeCR(mustGetCR(t)))
	}

	// The operator still reconciles: a new feature is applied and waits for Gatekeeper.
	gen2 := setSpec(t, map[string]interface{}{
		"privilegedContainers": map[string]interface{}{"enabled": true},
		"hostNamespaces":       map[string]interface{}{"enabled": true},
	})
	// Ready says Progressing until the admission probe finds pods admitted unchecked, then
	// AdmissionNotEnforced (s8_admission_test.go times that).
	eventually(t, 30*time.Second, "hostNamespaces Pending and Ready=False (Progressing or AdmissionNotEnforced) with Gatekeeper stopped", func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		fs, _ := featureStatus(cr, "hostNamespaces")
		status, reason := readyReason(cr)
		return observed(cr, gen2) && fs.State == v1alpha1.FeaturePending && status == metav1.ConditionFalse &&
				(reason == controllers.ReasonProgressing || reason == controllers.ReasonAdmissionNotEnforced),
			describeCR(cr)
	})
	// The feature is a parameter of the one constraint both features share: the operator
	// updated it although Gatekeeper cannot report on it now.
	denyName := templates.ConstraintName("deny")
	if features, found, err := constraintFeatures(context.Background(), denyName); err != nil || !found || features["hostNamespaces"] == nil {
		t.Errorf("constraint %s was not updated to enforce hostNamespaces while Gatekeeper is stopped (found %v, err %v, parameters.features %v)",
			denyName, found, err, sortedKeys(features))
	}
	if err := op.exitError(); err != nil {
		t.Fatal(err)
	}

	ready, took := startGatekeeperAndWaitReady(t, gen2, 90*time.Second)
	t.Logf("Gatekeeper back: Ready=True %s after `gatekeeper-start` began (the command took %s)", ready.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
	_, err = createPod(privilegedPod(ns, "after-start", "nginx"))
	expectDenied(t, "privileged pod after Gatekeeper is back", err, privilegedMessage)
	_, err = createPod(hostPIDPod(ns, "host-pid-after-start"))
	expectDenied(t, "hostPID pod after Gatekeeper is back (feature enabled while it was stopped)", err, hostPIDMessage)
}

// TestGatekeeperNotInstalled: an operator started without Gatekeeper's CRDs reports Ready=False
// (GatekeeperNotInstalled); installing and starting Gatekeeper makes it converge to Ready=True
// without a restart.
func TestGatekeeperNotInstalled(t *testing.T) {
	startScenario(t)
	restoreGatekeeper(t)

	if err := op.stop(); err != nil {
		t.Fatalf("stopping the operator: %v", err)
	}
	runClusterScript(t, "gatekeeper-crds-delete")
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Name: "constrainttemplates.templates.gatekeeper.sh"}, crd); !apierrors.IsNotFound(err) {
		t.Fatalf("the ConstraintTemplate CRD is still there after gatekeeper-crds-delete (err %v)", err)
	}
	var err error
	if op, err = startOperator(); err != nil {
		t.Fatalf("starting the operator without Gatekeeper: %v", err)
	}

	gen := setSpec(t, map[string]interface{}{
		"privilegedContainers": map[string]interface{}{"enabled": true},
		"hostNamespaces":       map[string]interface{}{"enabled": true},
	})
	notInstalled := func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		status, reason := readyReason(cr)
		return observed(cr, gen) && status == metav1.ConditionFalse && reason == controllers.ReasonGatekeeperNotInstalled, describeCR(cr)
	}
	eventually(t, 30*time.Second, "Ready=False (GatekeeperNotInstalled)", notInstalled)
	// It stays so, and the operator keeps running.
	time.Sleep(2 * refreshInterval)
	if ok, state := notInstalled(); !ok {
		t.Errorf("Ready changed while Gatekeeper is not installed: %s", state)
	}
	cr := mustGetCR(t)
	t.Logf("without Gatekeeper: %s", describeCR(cr))
	if err := op.exitError(); err != nil {
		t.Fatal(err)
	}

	ready, took := startGatekeeperAndWaitReady(t, gen, 90*time.Second)
	t.Logf("CONVERGENCE GatekeeperNotInstalled -> Ready=True: %s after `gatekeeper-start` began (CRDs installed, Gatekeeper started, webhook registered: the command took %s; goal < 60s)",
		ready.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
	if ready > 60*time.Second {
		t.Errorf("convergence took %s, want < 60s", ready.Round(time.Second))
	}

	ns := newNamespace(t, "gk-installed")
	_, err = createPod(privilegedPod(ns, "privileged", "nginx"))
	expectDenied(t, "privileged pod once Gatekeeper is installed", err, privilegedMessage)
}

// TestGatekeeperUninstalledWhileRunning: Gatekeeper's CRDs (and with them every template and
// constraint) are deleted under a running operator, which reports GatekeeperNotInstalled and,
// once Gatekeeper is installed again, applies everything anew and converges to Ready=True.
// Not one of the required scenarios; it covers the operator's watches going away and coming back.
func TestGatekeeperUninstalledWhileRunning(t *testing.T) {
	startScenario(t)
	restoreGatekeeper(t)
	gen := setSpec(t, map[string]interface{}{
		"privilegedContainers": map[string]interface{}{"enabled": true},
		"hostNamespaces":       map[string]interface{}{"enabled": true},
	})
	waitReady(t, gen, enforceTimeout)

	runClusterScript(t, "gatekeeper-crds-delete")
	eventually(t, 30*time.Second, "Ready=False (GatekeeperNotInstalled) after Gatekeeper's CRDs were deleted", func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		status, reason := readyReason(cr)
		return status == metav1.ConditionFalse && reason == controllers.ReasonGatekeeperNotInstalled, describeCR(cr)
	})
	if err := op.exitError(); err != nil {
		t.Fatal(err)
	}

	ready, took := startGatekeeperAndWaitReady(t, gen, 90*time.Second)
	t.Logf("reinstalled: Ready=True %s after `gatekeeper-start` began (the command took %s)", ready.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
	ns := newNamespace(t, "gk-reinstalled")
	_, err := createPod(privilegedPod(ns, "privileged", "nginx"))
	expectDenied(t, "privileged pod after Gatekeeper was reinstalled", err, privilegedMessage)
	_, err = createPod(hostPIDPod(ns, "host-pid"))
	expectDenied(t, "hostPID pod after Gatekeeper was reinstalled", err, hostPIDMessage)

	// The operator watches the new objects: a deleted constraint comes back.
	c := policyConstraint(templates.ConstraintName("deny"))
	if found, err := getObject(context.Background(), c); err != nil || !found {
		t.Fatalf("constraint %s: found %v, err %v", c.GetName(), found, err)
	}
	if err := k8s.Delete(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	d := waitRecreated(t, policyConstraint(c.GetName()), c.GetUID(), 30*time.Second)
	t.Logf("a constraint deleted after the reinstallation was restored after %s", d.Round(10*time.Millisecond))
}
