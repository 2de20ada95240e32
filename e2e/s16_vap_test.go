//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/controllers"
	"github.com/podsecurity/psc-operator/templates"
)

// vapBudget bounds how long Gatekeeper takes to generate a feature's policy and binding: it
// waits 30 s (--default-wait-for-vapb-generation) after creating a constraint CRD before it
// binds, so that the API server knows the kind.
const vapBudget = 2 * time.Minute

// TestValidatingAdmissionPolicy: with spec.validatingAdmissionPolicy.enabled the API server
// enforces the features itself, through the ValidatingAdmissionPolicy and binding Gatekeeper
// generates. Gatekeeper's process is then killed with its webhook still registered: a violating
// pod is still denied, with our message, a compliant one admitted, system and excluded
// namespaces stay open, and the CR says that only the API server enforces. Gatekeeper back:
// Ready. Gatekeeper uninstalled (webhook configuration deleted, CRDs kept): the same. Switched
// off: Gatekeeper deletes the policies and bindings.
func TestValidatingAdmissionPolicy(t *testing.T) {
	startScenario(t)
	restoreGatekeeper(t)
	ctx := context.Background()
	ns := newNamespace(t, "vap")
	excluded := newNamespace(t, "vap-excl")
	// psc-system: the operator runs outside the cluster here; create it while Gatekeeper runs.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "psc-system"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating psc-system: %v", err)
	}

	spec := map[string]interface{}{
		"validatingAdmissionPolicy": map[string]interface{}{"enabled": true},
		"hostNamespaces":            map[string]interface{}{"enabled": true, "excludedNamespaces": []interface{}{excluded}},
		"privilegedContainers":      map[string]interface{}{"enabled": true, "enforcementAction": "warn"},
	}
	// One policy for the one template; a binding for hostNamespaces' own constraint (it has
	// excludedNamespaces of its own), none for psc-warn (warn is not bound).
	policy := templates.PolicyName()
	hostNSConstraint := wantConstraintName(t, spec, "hostNamespaces")
	hostNSBinding := templates.BindingName(hostNSConstraint)
	gen := setSpec(t, spec)
	start := time.Now()
	waitReady(t, gen, vapBudget)
	t.Logf("VAP policies and bindings in place, Ready after %s", time.Since(start).Round(100*time.Millisecond))

	// The status names the policy and binding, and they exist.
	cr := mustGetCR(t)
	fs, _ := featureStatus(cr, "hostNamespaces")
	if a := fs.ValidatingAdmissionPolicy; a == nil || a.State != v1alpha1.APIServerActive || a.PolicyName != policy ||
		a.BindingName != hostNSBinding || strings.Join(a.ValidationActions, ",") != "Deny" {
		t.Errorf("hostNamespaces: validatingAdmissionPolicy %+v, want Active with %s, %s, Deny", a, policy, hostNSBinding)
	}
	if fs, _ := featureStatus(cr, "privilegedContainers"); fs.ValidatingAdmissionPolicy == nil || fs.ValidatingAdmissionPolicy.State != v1alpha1.APIServerNotBound ||
		fs.ValidatingAdmissionPolicy.PolicyName != policy {
		t.Errorf("privilegedContainers (warn): validatingAdmissionPolicy %+v, want NotBound (policy %s)", fs.ValidatingAdmissionPolicy, policy)
	}
	expectEnforcedBy(t, cr, "hostNamespaces", hostNSConstraint)
	expectEnforcedBy(t, cr, "privilegedContainers", wantConstraintName(t, spec, "privilegedContainers"))
	if c := conditionOf(cr, v1alpha1.ConditionAPIServerEnforced); c.Status != metav1.ConditionTrue {
		t.Errorf("APIServerEnforced = %s/%s: %s", c.Status, c.Reason, c.Message)
	}
	expectVAPObjects(t, []string{policy}, []string{hostNSBinding})

	// Both paths up: one denial message (the API server stops at its policy), and a
	// Deployment is still judged at apply time by the webhook.
	// The API server loads a new binding (and its constraint, the policy's params) a few seconds
	// after it appears; the webhook denies meanwhile.
	eventually(t, 30*time.Second, "the API server's policy to deny first", func() (bool, string) {
		_, err := clientset.CoreV1().Pods(ns).Create(ctx, hostPIDPod(ns, "both-up"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policy+"'"), fmt.Sprintf("%v", err)
	})
	_, err := createPod(hostPIDPod(ns, "both-up"))
	expectDeniedByPolicy(t, "hostPID pod with both paths up", err, policy, hostPIDMessage)
	if _, err := createPod(privilegedPod(ns, "warned", "nginx")); err != nil {
		t.Errorf("a privileged pod (warn) was denied: %v", err)
	} else if w := strings.Join(warnings.take(), "\n"); strings.Count(w, "psc/privilegedContainers:") != 1 {
		t.Errorf("warnings %q, want exactly one psc/privilegedContainers warning", w)
	}
	expectDeploymentDenied(t, ns, "hostpid-both-up")

	for _, stop := range []struct {
		what string
		stop func(*testing.T)
	}{
		{"killed", func(t *testing.T) {
			killGatekeeper(t)
			if !gatekeeperWebhookRegistered(t) {
				t.Fatal("the webhook configuration is gone: this step needs it registered")
			}
		}},
		{"uninstalled", func(t *testing.T) { runClusterScript(t, "gatekeeper-stop") }},
	} {
		t.Run("gatekeeper "+stop.what, func(t *testing.T) {
			stop.stop(t)
			stopped := time.Now()
			// The API server alone: the violating pod is denied with our message, the compliant one
			// admitted; system, operator, Gatekeeper, probe and excluded namespaces stay open.
			_, err := createPod(hostPIDPod(ns, "gk-"+stop.what))
			expectDeniedByPolicy(t, "hostPID pod with Gatekeeper "+stop.what, err, policy, hostPIDMessage)
			_, err = createPod(simplePod(ns, "compliant-gk-"+stop.what, "nginx"))
			expectAdmitted(t, "compliant pod with Gatekeeper "+stop.what, err)
			// (psc-probe enforces the restricted Pod Security profile, which denies hostPID
			// anyway; TestVAPNeverLocksOutSystemNamespaces in controllers/ covers it.)
			for _, open := range []string{"kube-system", "psc-system", "gatekeeper-system", excluded} {
				expectDryRunAdmitted(t, hostPIDPod(open, "vap-open-"+stop.what))
			}
			// What the API server cannot do: judge a Deployment as its pod.
			if err := createDeployment(ns, "hostpid-gk-"+stop.what, true); err != nil {
				t.Errorf("a hostPID Deployment with Gatekeeper %s was denied (only the webhook expands workloads): %v", stop.what, err)
			}

			eventually(t, admissionBudget, "Ready=False (EnforcedByAPIServerOnly)", func() (bool, string) {
				cr, err := getCR(ctx)
				if err != nil || cr == nil {
					return false, fmt.Sprintf("get: %v", err)
				}
				status, reason := readyReason(cr)
				return status == metav1.ConditionFalse && reason == controllers.ReasonEnforcedByAPIServerOnly, describeCR(cr)
			})
			t.Logf("VAP (Gatekeeper %s): Ready=False/EnforcedByAPIServerOnly %s after the stop", stop.what, time.Since(stopped).Round(100*time.Millisecond))
			cr := mustGetCR(t)
			if msg := readyCondition(cr).Message; !strings.Contains(msg, "The API server still enforces 1 of the 2 enabled features") ||
				!strings.Contains(msg, "Not enforced at all now: privilegedContainers") {
				t.Errorf("Ready's message: %q", msg)
			}
			if fs, _ := featureStatus(cr, "hostNamespaces"); fs.State != v1alpha1.FeatureEnforced {
				t.Errorf("hostNamespaces: %s (%s), want Enforced by the API server", fs.State, fs.Message)
			}
			if fs, _ := featureStatus(cr, "privilegedContainers"); fs.State != v1alpha1.FeatureNotEnforced {
				t.Errorf("privilegedContainers (warn): %s, want NotEnforced", fs.State)
			}
			if n := countCREvents(t, controllers.ReasonEnforcedByAPIServerOnly); n < 1 {
				t.Errorf("no %s event", controllers.ReasonEnforcedByAPIServerOnly)
			}

			back := time.Now()
			restartGatekeeper(t)
			eventually(t, admissionBudget, "Ready=True again", func() (bool, string) {
				cr, err := getCR(ctx)
				if err != nil || cr == nil {
					return false, fmt.Sprintf("get: %v", err)
				}
				return isReady(cr, gen), describeCR(cr)
			})
			t.Logf("VAP (Gatekeeper %s): Ready=True %s after gatekeeper-start", stop.what, time.Since(back).Round(100*time.Millisecond))
			expectDeploymentDenied(t, ns, "hostpid-back-"+stop.what)
		})
	}

	// Switched off: the constraints drop vap.k8s.io, then the templates stop generating, and
	// Gatekeeper deletes the bindings and the policies.
	gen = setSpec(t, map[string]interface{}{
		"validatingAdmissionPolicy": map[string]interface{}{"enabled": false},
		"hostNamespaces":            map[string]interface{}{"enabled": true, "excludedNamespaces": []interface{}{excluded}},
		"privilegedContainers":      map[string]interface{}{"enabled": true, "enforcementAction": "warn"},
	})
	off := time.Now()
	eventually(t, 60*time.Second, "the policies and bindings to be deleted", func() (bool, string) {
		policies, bindings := vapObjects(t)
		return len(policies)+len(bindings) == 0, fmt.Sprintf("policies %v, bindings %v", policies, bindings)
	})
	t.Logf("VAP switched off: policies and bindings deleted after %s", time.Since(off).Round(100*time.Millisecond))
	waitReady(t, gen, enforceTimeout)
	cr = mustGetCR(t)
	if fs, _ := featureStatus(cr, "hostNamespaces"); fs.ValidatingAdmissionPolicy != nil || len(fs.Message) == 0 || strings.Contains(fs.Message, "error") {
		t.Errorf("hostNamespaces after switching off: %+v", fs)
	}
	if c := conditionOf(cr, v1alpha1.ConditionAPIServerEnforced); c.Status != metav1.ConditionFalse || c.Reason != controllers.ReasonAPIServerDisabled {
		t.Errorf("APIServerEnforced = %s/%s, want False/Disabled", c.Status, c.Reason)
	}
	// The API server drops a deleted policy from its cache a moment later; then only the
	// webhook judges.
	eventually(t, 30*time.Second, "the webhook alone to deny", func() (bool, string) {
		_, err := clientset.CoreV1().Pods(ns).Create(ctx, hostPIDPod(ns, "after-off"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), gatekeeperDenial) && strings.Contains(err.Error(), hostPIDMessage), fmt.Sprintf("%v", err)
	})
}

func conditionOf(cr *v1alpha1.PodSecurityConstraints, typ string) metav1.Condition {
	for _, c := range cr.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return metav1.Condition{}
}

// vapObjects lists the ValidatingAdmissionPolicies and bindings generated from our objects.
func vapObjects(t *testing.T) (policies, bindings []string) {
	t.Helper()
	ctx := context.Background()
	pl := &admissionregistrationv1.ValidatingAdmissionPolicyList{}
	if err := k8s.List(ctx, pl); err != nil {
		t.Fatalf("listing policies: %v", err)
	}
	for _, p := range pl.Items {
		if strings.HasPrefix(p.Name, "gatekeeper-psc") {
			policies = append(policies, p.Name)
		}
	}
	bl := &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{}
	if err := k8s.List(ctx, bl); err != nil {
		t.Fatalf("listing bindings: %v", err)
	}
	for _, b := range bl.Items {
		if strings.HasPrefix(b.Name, "gatekeeper-psc") {
			bindings = append(bindings, b.Name)
		}
	}
	return policies, bindings
}

func expectVAPObjects(t *testing.T, wantPolicies, wantBindings []string) {
	t.Helper()
	policies, bindings := vapObjects(t)
	if strings.Join(policies, ",") != strings.Join(sorted(wantPolicies), ",") || strings.Join(bindings, ",") != strings.Join(sorted(wantBindings), ",") {
		t.Errorf("policies %v and bindings %v, want %v and %v", policies, bindings, wantPolicies, wantBindings)
	}
}

func sorted(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// expectDryRunAdmitted creates the pod as a server-side dry run (system namespaces keep no
// test pods) and expects it admitted. The namespace is created when missing (psc-system: the
// operator runs outside the cluster here); its default service account comes shortly after.
func expectDryRunAdmitted(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.Namespace}}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(nsObj), nsObj); apierrors.IsNotFound(err) {
		// Created while Gatekeeper runs (its check-ignore-label webhook fails closed).
		t.Fatalf("namespace %s does not exist; create it before stopping Gatekeeper", pod.Namespace)
	} else if err != nil {
		t.Fatalf("reading namespace %s: %v", pod.Namespace, err)
	}
	pod.Spec.AutomountServiceAccountToken = ptrTo(false)
	eventually(t, 30*time.Second, "a dry-run pod in "+pod.Namespace+" to be admitted", func() (bool, string) {
		_, err := clientset.CoreV1().Pods(pod.Namespace).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
			t.Fatalf("namespace %s is locked out by a policy: %v", pod.Namespace, err)
		}
		return err == nil, fmt.Sprintf("%v", err)
	})
}

// createDeployment creates a one-replica Deployment (hostPID as asked); it returns the API
// server's answer.
func createDeployment(ns, name string, hostPID bool) error {
	d := map[string]interface{}{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]interface{}{"name": name, "namespace": ns},
		"spec": map[string]interface{}{
			"replicas": int64(0),
			"selector": map[string]interface{}{"matchLabels": map[string]interface{}{"app": name}},
			"template": map[string]interface{}{
				"metadata": map[string]interface{}{"labels": map[string]interface{}{"app": name}},
				"spec":     map[string]interface{}{"hostPID": hostPID, "containers": []interface{}{map[string]interface{}{"name": "app", "image": "nginx"}}},
			},
		},
	}
	return k8s.Create(context.Background(), &unstructured.Unstructured{Object: d}, client.DryRunAll)
}

func expectDeploymentDenied(t *testing.T, ns, name string) {
	t.Helper()
	err := createDeployment(ns, name, true)
	expectDenied(t, "hostPID Deployment (judged by the webhook as its pod)", err, "[Implied by psc-deployment] "+hostPIDMessage)
}

// expectDeniedByPolicy expects a denial by the API server's ValidatingAdmissionPolicy (not by
// Gatekeeper's webhook) carrying the message once.
func expectDeniedByPolicy(t *testing.T, what string, err error, policy, message string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: admitted, want denied by ValidatingAdmissionPolicy %s with %q", what, policy, message)
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, "ValidatingAdmissionPolicy '"+policy+"'") || strings.Count(msg, message) != 1 || strings.Contains(msg, gatekeeperDenial) {
		t.Errorf("%s: want one denial by ValidatingAdmissionPolicy %s with %q, got: %s", what, policy, message, msg)
	}
}
