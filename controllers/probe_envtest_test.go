package controllers

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// TestAdmissionProbe runs the probe against a real API server. The test plays Gatekeeper's
// status (fakeGatekeeper) and, for the enforced path, Gatekeeper's webhook: a small TLS server
// registered as a ValidatingWebhookConfiguration that denies pods carrying the probe label,
// as Gatekeeper does with the probe policy. Without a webhook the API server admits the dry
// run, which is exactly what a cluster whose Gatekeeper is down does.
func TestAdmissionProbe(t *testing.T) {
	te := startEnvWithProbe(t, true, func(c client.Client) *AdmissionProbe {
		p, err := NewAdmissionProbe(c, DefaultProbeNamespace, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.Interval, p.ConfirmAfter, p.Timeout, p.Threshold = 300*time.Millisecond, 100*time.Millisecond, 5*time.Second, 2
		return p
	})
	startFakeGatekeeper(t, te.client)
	ctx := context.Background()

	// The probe namespace is missing: the probe cannot run, and Ready does not claim.
	applyCR(t, te.client, specWith("privilegedContainers"))
	cr := waitReady(t, te.client, metav1.ConditionFalse, ReasonAdmissionUnverified)
	if msg := readyMessage(cr); !strings.Contains(msg, "cannot run") || !strings.Contains(msg, "psc-probe") {
		t.Errorf("Ready message %q should say that the probe cannot run in psc-probe", msg)
	}

	// The installation's probe namespace (config/probe), as shipped.
	applyManifests(t, te.client, filepath.Join("..", "config", "probe", "probe.yaml"))

	// No webhook: the dry run is admitted (stopped only by the zero-pod quota after the
	// webhooks), so pods are admitted unchecked.
	cr = waitReady(t, te.client, metav1.ConditionFalse, ReasonAdmissionNotEnforced)
	if msg := readyMessage(cr); !strings.Contains(msg, "Pods are admitted unchecked") {
		t.Errorf("Ready message %q should say that pods are admitted unchecked", msg)
	}
	if fs := featureStatusOf(cr, "privilegedContainers"); fs.State != v1alpha1.FeatureNotEnforced || fs.Enforced {
		t.Errorf("privilegedContainers = %s enforced=%v, want NotEnforced", fs.State, fs.Enforced)
	}
	if cr.Status.EnforcedFeatures != 0 {
		t.Errorf("enforcedFeatures = %d, want 0", cr.Status.EnforcedFeatures)
	}
	eventually(t, waitTimeout, func() error { return findEvent(te.client, ReasonAdmissionNotEnforced, corev1.EventTypeWarning) })
	checkProbePolicy(t, te.client)

	// The verdict holds steady: no status write while it stays (the message does not carry
	// the time of each probe).
	rv := getCR(t, te.client).ResourceVersion
	time.Sleep(2 * time.Second)
	if now := getCR(t, te.client); now.ResourceVersion != rv {
		t.Errorf("the CR changed while the verdict stayed: %s", readyMessage(now))
	}
	if n := countEvents(t, te.client, ReasonAdmissionNotEnforced); n != 1 {
		t.Errorf("%d %s events, want 1", n, ReasonAdmissionNotEnforced)
	}

	// A webhook that denies the probe pod, as Gatekeeper does: Ready=True, verified.
	var reviews atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reviews.Add(1)
		denyProbePods(t, w, r)
	}))
	defer srv.Close()
	vwc := probeWebhookConfiguration(srv, admissionregistrationv1.Ignore)
	if err := te.client.Create(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = te.client.Delete(ctx, vwc) }()
	cr = waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	if msg := readyMessage(cr); !strings.Contains(msg, "probe pod verifies") {
		t.Errorf("Ready message %q should say that a probe verifies admission", msg)
	}
	if fs := featureStatusOf(cr, "privilegedContainers"); fs.State != v1alpha1.FeatureEnforced || !fs.Enforced {
		t.Errorf("privilegedContainers = %s enforced=%v, want Enforced", fs.State, fs.Enforced)
	}
	eventually(t, waitTimeout, func() error { return findEvent(te.client, ReasonEnforced, corev1.EventTypeNormal) })
	if reviews.Load() == 0 {
		t.Error("the webhook was never called")
	}

	// Steady state with the probe running: reconciles (refresh every second) find the probe
	// policy in place in the cache and apply nothing.
	time.Sleep(time.Second)
	applies := te.applies.Load()
	time.Sleep(3 * time.Second)
	if n := te.applies.Load() - applies; n != 0 {
		t.Errorf("the operator applied %d objects in steady state with the probe on, want 0", n)
	}

	// A change of features prunes the features' objects, never the probe policy.
	uids := probeUIDs(t, te.client)
	applyCR(t, te.client, specWith("hostNamespaces"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, denyOnly("hostNamespaces"))
	if now := probeUIDs(t, te.client); now != uids {
		t.Errorf("the probe policy was recreated by a feature change: UIDs %v, then %v", uids, now)
	}

	// The webhook goes away with failurePolicy Ignore (Gatekeeper's default): not enforced.
	srv.Close()
	waitReady(t, te.client, metav1.ConditionFalse, ReasonAdmissionNotEnforced)

	// With failurePolicy Fail the API server rejects pods unjudged: a state of its own.
	eventually(t, waitTimeout, func() error {
		live := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := te.client.Get(ctx, client.ObjectKeyFromObject(vwc), live); err != nil {
			return err
		}
		fail := admissionregistrationv1.Fail
		live.Webhooks[0].FailurePolicy = &fail
		return te.client.Update(ctx, live)
	})
	cr = waitReady(t, te.client, metav1.ConditionFalse, ReasonAdmissionWebhookFailing)
	if msg := readyMessage(cr); !strings.Contains(msg, "rejects pods without judging them") {
		t.Errorf("Ready message %q should say that pods are rejected unjudged", msg)
	}

	// Master switch off: nothing to verify, the probe policy goes.
	off := false
	spec := specWith("hostNamespaces")
	spec.Enabled = &off
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonMasterSwitchOff)
	eventually(t, waitTimeout, func() error {
		tmpl := renderProbeTemplate()
		err := te.client.Get(ctx, client.ObjectKeyFromObject(tmpl), tmpl)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("the probe template is still there (err %v)", err)
	})
	deleteCR(t, te.client)
}

func readyMessage(cr *v1alpha1.PodSecurityConstraints) string {
	if c := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Message
	}
	return ""
}

func countEvents(t *testing.T, c client.Client, reason string) int {
	t.Helper()
	n := 0
	eventually(t, waitTimeout, func() error {
		n = 0
		list := &eventsv1.EventList{}
		if err := c.List(context.Background(), list); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Kind == "PodSecurityConstraints" && e.Reason == reason {
				n++
			}
		}
		return nil
	})
	return n
}

// checkProbePolicy: the probe's template and constraint exist with their own labels (not the
// features' managed-by label), match only the probe namespace, and deny.
func checkProbePolicy(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	con := &unstructured.Unstructured{}
	con.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(probeConstraintKind))
	if err := c.Get(ctx, client.ObjectKey{Name: probeConstraintName}, con); err != nil {
		t.Fatalf("probe constraint: %v", err)
	}
	nss, _, _ := unstructured.NestedStringSlice(con.Object, "spec", "match", "namespaces")
	action := templates.ConstraintAction(con)
	if templates.BindsVAP(con) {
		t.Error("the probe constraint binds a ValidatingAdmissionPolicy: it must test the webhook path alone")
	}
	if len(nss) != 1 || nss[0] != DefaultProbeNamespace || action != "deny" {
		t.Errorf("probe constraint matches %v with %q, want [%s] with deny", nss, action, DefaultProbeNamespace)
	}
	// Both carry the managed-by label (so the informer cache holds them and a steady-state
	// reconcile finds them in place) and the probe's component label (so the feature pruner
	// leaves them alone).
	tmpl := renderProbeTemplate()
	if err := c.Get(ctx, client.ObjectKeyFromObject(tmpl), tmpl); err != nil {
		t.Fatalf("probe template: %v", err)
	}
	for _, obj := range []*unstructured.Unstructured{tmpl, con} {
		l := obj.GetLabels()
		if l[templates.LabelManagedBy] != templates.ManagedByValue || l[labelComponent] != probeComponent {
			t.Errorf("%s %s has labels %v, want %s=%s and %s=%s", obj.GetKind(), obj.GetName(), l,
				templates.LabelManagedBy, templates.ManagedByValue, labelComponent, probeComponent)
		}
	}
}

// probeUIDs returns the UIDs of the probe template and constraint.
func probeUIDs(t *testing.T, c client.Client) [2]types.UID {
	t.Helper()
	var uids [2]types.UID
	for i, obj := range []*unstructured.Unstructured{renderProbeTemplate(), renderProbeConstraint("")} {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		uids[i] = obj.GetUID()
	}
	return uids
}

// applyManifests creates the objects of a multi-document YAML file.
func applyManifests(t *testing.T, c client.Client, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(data), "\n---") {
		obj := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if err := c.Create(context.Background(), u); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// probeWebhookConfiguration registers srv for pod creations in the probe namespace.
func probeWebhookConfiguration(srv *httptest.Server, policy admissionregistrationv1.FailurePolicyType) *admissionregistrationv1.ValidatingWebhookConfiguration {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	url := srv.URL + "/v1/admit"
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(3)
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "test-gatekeeper"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "validation.gatekeeper.sh",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &policy,
			TimeoutSeconds:          &timeout,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
				"kubernetes.io/metadata.name": DefaultProbeNamespace,
			}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
		}},
	}
}

// denyProbePods answers an AdmissionReview: pods with the probe label are denied with the
// probe policy's message, as Gatekeeper words it; everything else is allowed.
func denyProbePods(t *testing.T, w http.ResponseWriter, r *http.Request) {
	review := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(r.Body).Decode(review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(review.Request.Object.Raw, pod); err != nil {
		http.Error(w, "bad pod", http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if pod.Labels[probeLabel] == probeLabelValue {
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
			Message: "[" + probeConstraintName + "] " + probeDenyMarker + " this pod is psc-operator's admission probe"}
	}
	review.Response = resp
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(review); err != nil {
		t.Logf("writing the review: %v", err)
	}
}
