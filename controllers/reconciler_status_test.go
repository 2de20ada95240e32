package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

func testStatusFollowsGatekeeper(t *testing.T, te *testEnv, fg *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	defer fg.setViolations("PSCPrivilegedContainers", 0)
	spec := specWith("privilegedContainers", "hostNamespaces")
	spec.HostNamespaces.EnforcementAction = v1alpha1.EnforcementWarn
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)

	fg.setViolations("PSCPrivilegedContainers", 7)
	var obj *v1alpha1.PodSecurityConstraints
	eventually(t, waitTimeout, func() error {
		obj = getCR(t, te.client)
		if obj.Status.TotalViolations != 7 {
			return fmt.Errorf("totalViolations %d, want 7", obj.Status.TotalViolations)
		}
		return nil
	})
	pc := featureStatusOf(obj, "privilegedContainers")
	if pc.State != v1alpha1.FeatureEnforced || !pc.Enforced || !pc.TemplateCreated {
		t.Errorf("privilegedContainers status %+v, want Enforced", pc)
	}
	if pc.TotalViolations != 7 || len(pc.Violations) != v1alpha1.MaxSampleViolations {
		t.Errorf("violations %d with %d samples, want 7 with %d samples", pc.TotalViolations, len(pc.Violations), v1alpha1.MaxSampleViolations)
	}
	if pc.AuditTimestamp == nil || pc.AuditTimestamp.UTC().Format(time.RFC3339) != fakeAuditTimestamp {
		t.Errorf("auditTimestamp %v, want %s", pc.AuditTimestamp, fakeAuditTimestamp)
	}
	if pc.ConstraintKind != "PSCPrivilegedContainers" || pc.ConstraintName != "psc-privileged-containers" || pc.TemplateName != "pscprivilegedcontainers" {
		t.Errorf("names in status: %+v", pc)
	}
	if hn := featureStatusOf(obj, "hostNamespaces"); hn.EnforcementAction != v1alpha1.EnforcementWarn {
		t.Errorf("hostNamespaces effective action %q, want warn", hn.EnforcementAction)
	}
	if obj.Status.ObservedGeneration != obj.Generation {
		t.Errorf("observedGeneration %d, generation %d", obj.Status.ObservedGeneration, obj.Generation)
	}
	for _, c := range []string{v1alpha1.ConditionReconciling, v1alpha1.ConditionStalled} {
		if meta.FindStatusCondition(obj.Status.Conditions, c) != nil {
			t.Errorf("condition %s present while not true", c)
		}
	}
}

func testTemplateErrorsSurface(t *testing.T, te *testEnv, fg *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	f, _ := templates.FeatureByName("hostNamespaces")
	fg.setTemplateError(f.TemplateName(), "rego_parse_error: unexpected token")
	defer fg.setTemplateError(f.TemplateName(), "")

	applyCR(t, te.client, specWith("privilegedContainers", "hostNamespaces"))
	obj := waitReady(t, te.client, metav1.ConditionFalse, ReasonFeatureError)
	hn := featureStatusOf(obj, "hostNamespaces")
	if hn.State != v1alpha1.FeatureError || !strings.Contains(hn.Message, "rego_parse_error: unexpected token") {
		t.Errorf("hostNamespaces status %+v, want Error naming the template error", hn)
	}
	if stalled := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionStalled); stalled == nil || stalled.Reason != ReasonFeatureError {
		t.Errorf("Stalled = %+v, want True with reason FeatureError", stalled)
	}
	ready := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
	if !strings.Contains(ready.Message, "hostNamespaces") || !strings.Contains(ready.Message, "unexpected token") {
		t.Errorf("Ready message %q does not name the failing feature and error", ready.Message)
	}
	// The other feature keeps working.
	eventually(t, waitTimeout, func() error {
		if pc := featureStatusOf(getCR(t, te.client), "privilegedContainers"); pc.State != v1alpha1.FeatureEnforced {
			return fmt.Errorf("privilegedContainers state %q, want Enforced", pc.State)
		}
		return nil
	})
	// A warning event tells it too.
	eventually(t, waitTimeout, func() error { return findEvent(te.client, ReasonFeatureError, corev1.EventTypeWarning) })

	// Recovery once Gatekeeper accepts the template.
	fg.setTemplateError(f.TemplateName(), "")
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	eventually(t, waitTimeout, func() error { return findEvent(te.client, ReasonEnforced, corev1.EventTypeNormal) })
}

func findEvent(c client.Client, reason, typ string) error {
	list := &eventsv1.EventList{}
	if err := c.List(context.Background(), list); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "PodSecurityConstraints" && e.Reason == reason && e.Type == typ {
			return nil
		}
	}
	return fmt.Errorf("no %s event with reason %s among %d events", typ, reason, len(list.Items))
}

func testSteadyStateWritesNothing(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	applyCR(t, te.client, specWith("privilegedContainers", "hostNamespaces", "sysctls"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	// Let in-flight reconciles finish, then count: the refresh interval is 1s, so several
	// periodic reconciles run in the window.
	time.Sleep(2 * time.Second)
	before, readsBefore := te.writes.Load(), te.reads.Load()
	time.Sleep(4 * time.Second)
	if n := te.writes.Load() - before; n != 0 {
		t.Errorf("the operator wrote %d times in steady state, want 0", n)
	}
	// Gatekeeper objects are read from the informer cache: no API reads at all.
	if n := te.reads.Load() - readsBefore; n != 0 {
		t.Errorf("the operator made %d API reads in steady state, want 0 (reads come from the cache)", n)
	}
	// And it did reconcile meanwhile: a status change from Gatekeeper shows up.
}

func testConflictsAreSurvived(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	te.conflicts.Store(5)
	applyCR(t, te.client, specWith("privilegedContainers", "hostNamespaces"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitObjects(t, te.client, expectedObjects("privilegedContainers", "hostNamespaces"))
	if n := te.conflicts.Load(); n != 0 {
		t.Errorf("%d injected conflicts were never hit", n)
	}
}

func testUnownedObjectsAreNeverTouched(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	ctx := context.Background()
	foreign := &unstructured.Unstructured{}
	foreign.SetGroupVersionKind(templates.TemplateGVK)
	foreign.SetName("k8spspforeign")
	if err := unstructured.SetNestedMap(foreign.Object, map[string]interface{}{
		"crd": map[string]interface{}{"spec": map[string]interface{}{"names": map[string]interface{}{"kind": "K8sPSPForeign"}}},
		"targets": []interface{}{map[string]interface{}{
			"target": "admission.k8s.gatekeeper.sh",
			"rego":   "package k8spspforeign\nviolation[{\"msg\": \"x\"}] { false }\n",
		}},
	}, "spec"); err != nil {
		t.Fatal(err)
	}
	if err := te.client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = te.client.Delete(ctx, foreign) }()

	applyCR(t, te.client, specWith("privilegedContainers"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	applyCR(t, te.client, v1alpha1.PodSecurityConstraintsSpec{})
	waitObjects(t, te.client, nil)
	deleteCR(t, te.client)
	consistently(t, 2*time.Second, func() error {
		return te.client.Get(ctx, client.ObjectKey{Name: "k8spspforeign"}, foreign)
	})
}

func testDeletionPrunesEverything(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	applyCR(t, te.client, specWith("privilegedContainers", "capabilities", "sysctls"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	if got := getCR(t, te.client).Finalizers; len(got) != 1 || got[0] != Finalizer {
		t.Errorf("finalizers %v, want [%s]", got, Finalizer)
	}
	deleteCR(t, te.client)
	waitObjects(t, te.client, nil)
}

func testOnlyClusterIsAccepted(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	other := &v1alpha1.PodSecurityConstraints{ObjectMeta: metav1.ObjectMeta{Name: "second"}}
	err := te.client.Create(context.Background(), other)
	if err == nil || !strings.Contains(err.Error(), "must be named 'cluster'") {
		t.Fatalf("creating a CR named %q: %v, want the one-per-cluster rejection", other.Name, err)
	}
}
