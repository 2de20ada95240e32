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
	defer func() {
		for _, f := range []string{"privilegedContainers", "capabilities", "hostNamespaces"} {
			fg.setViolations(f, 0)
		}
	}()
	// psc-deny enforces privilegedContainers and capabilities, psc-warn hostNamespaces.
	spec := specWith("privilegedContainers", "hostNamespaces", "capabilities")
	spec.HostNamespaces.EnforcementAction = v1alpha1.EnforcementWarn
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, map[string][]string{"psc-deny": {"privilegedContainers", "capabilities"}, "psc-warn": {"hostNamespaces"}})

	fg.setViolations("privilegedContainers", 7)
	fg.setViolations("capabilities", 3)
	fg.setViolations("hostNamespaces", 2)
	obj := waitTotalViolations(t, te.client, 12)
	pc := featureStatusOf(obj, "privilegedContainers")
	if pc.State != v1alpha1.FeatureEnforced || !pc.Enforced || !pc.TemplateCreated {
		t.Errorf("privilegedContainers status %+v, want Enforced", pc)
	}
	// Each feature counts its own violations out of its constraint's, by message.
	for _, want := range []struct {
		feature string
		total   int64
		samples int
	}{{"privilegedContainers", 7, v1alpha1.MaxSampleViolations}, {"capabilities", 3, 3}, {"hostNamespaces", 2, 2}} {
		fs := featureStatusOf(obj, want.feature)
		if fs.TotalViolations != want.total || len(fs.Violations) != want.samples {
			t.Errorf("%s: %d violations with %d samples, want %d with %d", want.feature, fs.TotalViolations, len(fs.Violations), want.total, want.samples)
		}
		for _, v := range fs.Violations {
			if templates.FeatureOfMessage(v.Message) != want.feature {
				t.Errorf("%s shows the violation of another feature: %+v", want.feature, v)
			}
		}
		if !strings.Contains(fs.Message, fmt.Sprintf("; %d audit violations.", want.total)) {
			t.Errorf("%s message %q does not give its count", want.feature, fs.Message)
		}
	}
	if pc.AuditTimestamp == nil || pc.AuditTimestamp.UTC().Format(time.RFC3339) != fakeAuditTimestamp {
		t.Errorf("auditTimestamp %v, want %s", pc.AuditTimestamp, fakeAuditTimestamp)
	}
	if pc.ConstraintKind != templates.PolicyKind || pc.ConstraintName != "psc-deny" || pc.TemplateName != templates.PolicyTemplateName {
		t.Errorf("names in status: %+v", pc)
	}
	hn := featureStatusOf(obj, "hostNamespaces")
	if hn.EnforcementAction != v1alpha1.EnforcementWarn || hn.ConstraintName != "psc-warn" {
		t.Errorf("hostNamespaces effective action %q in constraint %q, want warn in psc-warn", hn.EnforcementAction, hn.ConstraintName)
	}
	if obj.Status.ObservedGeneration != obj.Generation {
		t.Errorf("observedGeneration %d, generation %d", obj.Status.ObservedGeneration, obj.Generation)
	}
	for _, c := range []string{v1alpha1.ConditionReconciling, v1alpha1.ConditionStalled} {
		if meta.FindStatusCondition(obj.Status.Conditions, c) != nil {
			t.Errorf("condition %s present while not true", c)
		}
	}

	// Beyond the violations Gatekeeper lists (20 here), the features of a shared constraint
	// count what is listed, and say that it is a lower bound; the top-level total stays exact.
	fg.setViolations("privilegedContainers", 25)
	obj = waitTotalViolations(t, te.client, 25+3+2)
	pc, caps := featureStatusOf(obj, "privilegedContainers"), featureStatusOf(obj, "capabilities")
	if pc.TotalViolations != 20 || caps.TotalViolations != 0 {
		t.Errorf("privilegedContainers/capabilities count %d/%d of the 20 listed, want 20/0", pc.TotalViolations, caps.TotalViolations)
	}
	for _, fs := range []v1alpha1.FeatureStatus{pc, caps} {
		if !strings.Contains(fs.Message, "at least") || !strings.Contains(fs.Message, "has 28") {
			t.Errorf("%s message %q does not say its count is a lower bound", fs.Name, fs.Message)
		}
	}
	// A feature alone in its constraint is exact.
	if hn := featureStatusOf(obj, "hostNamespaces"); hn.TotalViolations != 2 {
		t.Errorf("hostNamespaces violations %d, want 2", hn.TotalViolations)
	}
}

// waitTotalViolations waits until status.totalViolations is n.
func waitTotalViolations(t *testing.T, c client.Client, n int64) *v1alpha1.PodSecurityConstraints {
	t.Helper()
	var obj *v1alpha1.PodSecurityConstraints
	eventually(t, waitTimeout, func() error {
		obj = getCR(t, c)
		if obj.Status.TotalViolations != n {
			return fmt.Errorf("totalViolations %d, want %d", obj.Status.TotalViolations, n)
		}
		return nil
	})
	return obj
}

// testTemplateErrorsSurface: the policy template serves every feature, so its errors are every
// enabled feature's.
func testTemplateErrorsSurface(t *testing.T, te *testEnv, fg *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	fg.setTemplateError(templates.PolicyTemplateName, "rego_parse_error: unexpected token")
	defer fg.setTemplateError(templates.PolicyTemplateName, "")

	applyCR(t, te.client, specWith("privilegedContainers", "hostNamespaces"))
	obj := waitReady(t, te.client, metav1.ConditionFalse, ReasonFeatureError)
	for _, name := range []string{"privilegedContainers", "hostNamespaces"} {
		fs := featureStatusOf(obj, name)
		if fs.State != v1alpha1.FeatureError || !strings.Contains(fs.Message, "rego_parse_error: unexpected token") {
			t.Errorf("%s status %+v, want Error naming the template error", name, fs)
		}
	}
	if stalled := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionStalled); stalled == nil || stalled.Reason != ReasonFeatureError {
		t.Errorf("Stalled = %+v, want True with reason FeatureError", stalled)
	}
	ready := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
	if !strings.Contains(ready.Message, "hostNamespaces") || !strings.Contains(ready.Message, "unexpected token") {
		t.Errorf("Ready message %q does not name the failing feature and error", ready.Message)
	}
	// A warning event tells it too.
	eventually(t, waitTimeout, func() error { return findEvent(te.client, ReasonFeatureError, corev1.EventTypeWarning) })

	// Recovery once Gatekeeper accepts the template.
	fg.setTemplateError(templates.PolicyTemplateName, "")
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	eventually(t, waitTimeout, func() error { return findEvent(te.client, ReasonEnforced, corev1.EventTypeNormal) })
}

// testConstraintErrorsStayWithTheirFeatures: an error Gatekeeper reports for one constraint is
// the error of the features it enforces only.
func testConstraintErrorsStayWithTheirFeatures(t *testing.T, te *testEnv, fg *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	fg.setConstraintError("psc-host-namespaces", "constraint rejected")
	defer fg.setConstraintError("psc-host-namespaces", "")

	spec := specWith("privilegedContainers", "hostNamespaces")
	spec.HostNamespaces.ExcludedNamespaces = []v1alpha1.NamespacePattern{"legacy"}
	applyCR(t, te.client, spec)
	obj := waitReady(t, te.client, metav1.ConditionFalse, ReasonFeatureError)
	waitPolicy(t, te.client, map[string][]string{"psc-deny": {"privilegedContainers"}, "psc-host-namespaces": {"hostNamespaces"}})
	if hn := featureStatusOf(obj, "hostNamespaces"); hn.State != v1alpha1.FeatureError || !strings.Contains(hn.Message, "constraint rejected") || hn.ConstraintName != "psc-host-namespaces" {
		t.Errorf("hostNamespaces status %+v, want Error naming the constraint error of psc-host-namespaces", hn)
	}
	eventually(t, waitTimeout, func() error {
		if pc := featureStatusOf(getCR(t, te.client), "privilegedContainers"); pc.State != v1alpha1.FeatureEnforced {
			return fmt.Errorf("privilegedContainers state %q, want Enforced", pc.State)
		}
		return nil
	})
	fg.setConstraintError("psc-host-namespaces", "")
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
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
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "hostNamespaces"))
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
