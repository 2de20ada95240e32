//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

const hostPIDMessage = "psc/hostNamespaces: pod spec.hostPID is true (shares the host's PID namespace), allowed: false"

func hostPIDPod(ns, name string) *corev1.Pod {
	p := simplePod(ns, name, "nginx")
	p.Spec.HostPID = true
	return p
}

// TestEnforcementActions: warn admits with a warning carrying the message; dryrun admits
// silently and the violation shows up in the CR's status after Gatekeeper's next audit.
func TestEnforcementActions(t *testing.T) {
	startScenario(t)

	t.Run("warn", func(t *testing.T) {
		ns := newNamespace(t, "warn")
		// warn globally; hostNamespaces overrides it with deny.
		gen := setSpec(t, map[string]interface{}{
			"enforcementAction":    "warn",
			"privilegedContainers": map[string]interface{}{"enabled": true},
			"hostNamespaces":       map[string]interface{}{"enabled": true, "enforcementAction": "deny"},
		})
		waitReady(t, gen, enforceTimeout)
		cr := mustGetCR(t)
		for name, want := range map[string]v1alpha1.EnforcementAction{"privilegedContainers": v1alpha1.EnforcementWarn, "hostNamespaces": v1alpha1.EnforcementDeny} {
			if fs, _ := featureStatus(cr, name); fs.EnforcementAction != want {
				t.Errorf("status of %s: enforcementAction %q, want %q", name, fs.EnforcementAction, want)
			}
		}

		warnings.take()
		_, err := createPod(privilegedPod(ns, "privileged", "nginx"))
		got := warnings.take()
		expectAdmitted(t, "privileged pod under warn", err)
		if !containsSubstring(got, privilegedMessage) {
			t.Errorf("privileged pod under warn: warnings %q, want one containing %q", got, privilegedMessage)
		} else {
			t.Logf("warnings: %q", got)
		}

		_, err = createPod(hostPIDPod(ns, "host-pid"))
		expectDenied(t, "hostPID pod (feature-level deny overrides global warn)", err, hostPIDMessage)
	})

	t.Run("dryrun", func(t *testing.T) {
		ns := newNamespace(t, "dryrun")
		gen := setSpec(t, map[string]interface{}{
			"hostNamespaces": map[string]interface{}{"enabled": true, "enforcementAction": "dryrun"},
		})
		waitFeature(t, gen, "hostNamespaces", v1alpha1.FeatureEnforced)
		waitReady(t, gen, enforceTimeout)
		if fs, _ := featureStatus(mustGetCR(t), "hostNamespaces"); fs.EnforcementAction != v1alpha1.EnforcementDryRun {
			t.Errorf("status of hostNamespaces: enforcementAction %q, want dryrun", fs.EnforcementAction)
		}

		warnings.take()
		_, err := createPod(hostPIDPod(ns, "host-pid"))
		got := warnings.take()
		expectAdmitted(t, "hostPID pod under dryrun", err)
		if containsSubstring(got, "psc/") {
			t.Errorf("hostPID pod under dryrun: got warnings %q, want none from the policies", got)
		}

		d := waitViolationSample(t, "hostNamespaces", ns, "host-pid", hostPIDMessage, v1alpha1.EnforcementDryRun)
		t.Logf("the audit violation of %s/host-pid reached the CR's status %s after the pod was created", ns, d.Round(100*time.Millisecond))
		cr := mustGetCR(t)
		if cr.Status.TotalViolations < 1 {
			t.Errorf("status.totalViolations = %d, want >= 1", cr.Status.TotalViolations)
		}
	})
}

// waitViolationSample waits for Gatekeeper's audit to report the pod ns/name as a violation of
// feature, and for the operator to copy it into the CR's status.
func waitViolationSample(t testing.TB, feature, ns, name, message string, action v1alpha1.EnforcementAction) time.Duration {
	t.Helper()
	return eventually(t, auditTimeout, fmt.Sprintf("an audit violation of %s naming pod %s/%s in the CR's status", feature, ns, name), func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		fs, ok := featureStatus(cr, feature)
		if !ok {
			return false, describeCR(cr)
		}
		state := fmt.Sprintf("%s: totalViolations %d, auditTimestamp %v, samples %+v", feature, fs.TotalViolations, fs.AuditTimestamp, fs.Violations)
		if fs.TotalViolations < 1 || fs.AuditTimestamp == nil {
			return false, state
		}
		for _, v := range fs.Violations {
			if v.Kind == "Pod" && v.Namespace == ns && v.Name == name && strings.Contains(v.Message, message) &&
				(action == "" || v.EnforcementAction == string(action)) {
				return true, ""
			}
		}
		return false, state
	})
}

func containsSubstring(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}
