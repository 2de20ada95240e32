package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// testFeaturesMoveBetweenConstraints: a feature's enforcement action and own excludedNamespaces
// pick its constraint; a change moves it from one to the other, a constraint left without
// features is pruned, and each change gets one Applied event naming the feature.
func testFeaturesMoveBetweenConstraints(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	ctx := context.Background()
	spec := specWith("privilegedContainers", "hostNamespaces", "capabilities")
	applyCR(t, te.client, spec)
	obj := waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "hostNamespaces", "capabilities"))
	events := []string{"Applied the objects of: policy template, privilegedContainers, hostNamespaces, capabilities, expansion"}
	waitAppliedEvents(t, te.client, obj.UID, events)

	// deny -> warn: hostNamespaces moves from psc-deny to a new psc-warn.
	spec.HostNamespaces.EnforcementAction = v1alpha1.EnforcementWarn
	applyCR(t, te.client, spec)
	waitPolicy(t, te.client, map[string][]string{"psc-deny": {"privilegedContainers", "capabilities"}, "psc-warn": {"hostNamespaces"}})
	obj = waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	if hn := featureStatusOf(obj, "hostNamespaces"); hn.ConstraintName != "psc-warn" || hn.EnforcementAction != v1alpha1.EnforcementWarn || hn.State != v1alpha1.FeatureEnforced {
		t.Errorf("hostNamespaces status %+v, want Enforced (warn) by psc-warn", hn)
	}
	warn := &unstructured.Unstructured{}
	warn.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
	if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-warn"}, warn); err != nil {
		t.Fatal(err)
	}
	if a := templates.ConstraintAction(warn); a != "warn" {
		t.Errorf("psc-warn enforces with action %q, want warn", a)
	}
	events = append(events, "Applied the objects of: hostNamespaces")
	waitAppliedEvents(t, te.client, obj.UID, events)

	// Back to deny: psc-warn has no feature left and is pruned.
	spec.HostNamespaces.EnforcementAction = ""
	applyCR(t, te.client, spec)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "hostNamespaces", "capabilities"))
	obj = waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	eventually(t, waitTimeout, func() error { return findEventNote(te.client, ReasonPruned, templates.PolicyKind+"/psc-warn") })
	events = append(events, "Applied the objects of: hostNamespaces")
	waitAppliedEvents(t, te.client, obj.UID, events)

	// Namespaces of its own: a constraint of its own, whose match excludes them; the others'
	// constraint does not.
	spec.HostNamespaces.ExcludedNamespaces = []v1alpha1.NamespacePattern{"legacy"}
	applyCR(t, te.client, spec)
	waitPolicy(t, te.client, map[string][]string{"psc-deny": {"privilegedContainers", "capabilities"}, "psc-host-namespaces": {"hostNamespaces"}})
	obj = waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	for name, wantLegacy := range map[string]bool{"psc-host-namespaces": true, "psc-deny": false} {
		con := &unstructured.Unstructured{}
		con.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
		if err := te.client.Get(ctx, client.ObjectKey{Name: name}, con); err != nil {
			t.Fatal(err)
		}
		excluded, _, _ := unstructured.NestedStringSlice(con.Object, "spec", "match", "excludedNamespaces")
		if slices.Contains(excluded, "legacy") != wantLegacy {
			t.Errorf("%s excludes %v; want legacy excluded: %v", name, excluded, wantLegacy)
		}
	}
	if hn := featureStatusOf(obj, "hostNamespaces"); hn.ConstraintName != "psc-host-namespaces" || hn.State != v1alpha1.FeatureEnforced {
		t.Errorf("hostNamespaces status %+v, want Enforced by psc-host-namespaces", hn)
	}
	events = append(events, "Applied the objects of: hostNamespaces")
	waitAppliedEvents(t, te.client, obj.UID, events)

	// Switched off: out of every constraint; its own is pruned.
	spec.HostNamespaces = nil
	applyCR(t, te.client, spec)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "capabilities"))
	obj = waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	if hn := featureStatusOf(obj, "hostNamespaces"); hn.State != v1alpha1.FeatureDisabled || hn.ConstraintName != "" {
		t.Errorf("hostNamespaces status %+v, want Disabled without a constraint", hn)
	}
	eventually(t, waitTimeout, func() error {
		return findEventNote(te.client, ReasonPruned, templates.PolicyKind+"/psc-host-namespaces")
	})
}

// testConstraintGenerationIsChecked: switching a feature on is a change of its constraint's
// parameters; neither it nor the features sharing the constraint count as enforced until every
// Gatekeeper pod reports the constraint's new generation.
func testConstraintGenerationIsChecked(t *testing.T, te *testEnv, fg *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	defer fg.setFrozen(false)
	spec := specWith("privilegedContainers")
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)

	fg.setFrozen(true)
	spec.Capabilities = specWith("capabilities").Capabilities
	applyCR(t, te.client, spec)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "capabilities"))
	obj := waitReady(t, te.client, metav1.ConditionFalse, ReasonProgressing)
	for _, name := range []string{"privilegedContainers", "capabilities"} {
		fs := featureStatusOf(obj, name)
		if fs.State != v1alpha1.FeaturePending || fs.Enforced || !strings.Contains(fs.Message, "to enforce generation 2 of the constraint") {
			t.Errorf("%s status %+v, want Pending until Gatekeeper reports generation 2 of psc-deny", name, fs)
		}
	}
	consistently(t, time.Second, func() error {
		if got := getCR(t, te.client).Status.EnforcedFeatures; got != 0 {
			return fmt.Errorf("%d features enforced while Gatekeeper reports an older generation of their constraint", got)
		}
		return nil
	})
	fg.setFrozen(false)
	obj = waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	if obj.Status.EnforcedFeatures != 2 {
		t.Errorf("enforced features %d, want 2", obj.Status.EnforcedFeatures)
	}
}

// testOldLayoutIsPruned: after an upgrade from the layout with one template per feature, the
// old templates (psc<feature>, labelled as ours) are pruned, and Gatekeeper removes their
// constraint CRDs and constraints with them; not before the policy template's constraints are
// enforced (make before break).
func testOldLayoutIsPruned(t *testing.T, te *testEnv, fg *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	ctx := context.Background()
	const oldKind = "PSCHostNamespaces"
	old := &unstructured.Unstructured{}
	old.SetGroupVersionKind(templates.TemplateGVK)
	old.SetName(strings.ToLower(oldKind))
	old.SetLabels(map[string]string{templates.LabelManagedBy: templates.ManagedByValue, templates.LabelFeature: "hostNamespaces"})
	if err := unstructured.SetNestedMap(old.Object, map[string]interface{}{
		"crd": map[string]interface{}{"spec": map[string]interface{}{"names": map[string]interface{}{"kind": oldKind}}},
		"targets": []interface{}{map[string]interface{}{
			"target": "admission.k8s.gatekeeper.sh",
			"rego":   "package pschostnamespaces\nviolation[{\"msg\": \"x\"}] { false }\n",
		}},
	}, "spec"); err != nil {
		t.Fatal(err)
	}
	if err := te.client.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	crdName := constraintCRDName(oldKind)
	oldCon := &unstructured.Unstructured{}
	oldCon.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(oldKind))
	oldCon.SetName("psc-host-namespaces")
	oldCon.SetLabels(map[string]string{templates.LabelManagedBy: templates.ManagedByValue, templates.LabelFeature: "hostNamespaces"})
	eventually(t, waitTimeout, func() error { return client.IgnoreAlreadyExists(te.client.Create(ctx, oldCon)) })

	// Gatekeeper does not report the new constraint enforced yet: the old template stays.
	fg.setFrozen(true)
	defer fg.setFrozen(false)
	applyCR(t, te.client, specWith("hostNamespaces"))
	eventually(t, waitTimeout, func() error {
		con := &unstructured.Unstructured{}
		con.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
		return te.client.Get(ctx, client.ObjectKey{Name: "psc-deny"}, con)
	})
	time.Sleep(3 * time.Second) // several reconciles (each requeued while Pending)
	if err := te.client.Get(ctx, client.ObjectKeyFromObject(old), &unstructured.Unstructured{Object: map[string]interface{}{"apiVersion": old.GetAPIVersion(), "kind": old.GetKind()}}); err != nil {
		t.Fatalf("the old template was pruned before the new policy was enforced: %v", err)
	}
	fg.setFrozen(false)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, denyOnly("hostNamespaces"))
	eventually(t, waitTimeout, func() error {
		return findEventNote(te.client, ReasonPruned, "ConstraintTemplate/"+strings.ToLower(oldKind))
	})
	eventually(t, waitTimeout, func() error {
		if err := te.client.Get(ctx, client.ObjectKey{Name: crdName}, &apiextensionsv1.CustomResourceDefinition{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the old constraint CRD %s is still there (%v)", crdName, err)
		}
		return nil
	})
}

// findEventNote finds a Normal event with the reason whose note names the object.
func findEventNote(c client.Client, reason, substring string) error {
	list := &eventsv1.EventList{}
	if err := c.List(context.Background(), list); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "PodSecurityConstraints" && e.Reason == reason && e.Type == corev1.EventTypeNormal && strings.Contains(e.Note, substring) {
			return nil
		}
	}
	return fmt.Errorf("no %s event naming %s", reason, substring)
}

// testUnbindBeforeTemplate: when the constraints must lose the API server's enforcement point
// (spec.validatingAdmissionPolicy switched off), the operator applies them before the policy
// template stops generating the policy, so that Gatekeeper never finds a constraint asking
// for a binding to a policy the template no longer generates.
func testUnbindBeforeTemplate(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	ctx := context.Background()
	spec := specWith("privilegedContainers", "hostNamespaces")
	spec.HostNamespaces.EnforcementAction = v1alpha1.EnforcementWarn
	spec.ValidatingAdmissionPolicy = &v1alpha1.ValidatingAdmissionPolicy{Enabled: true}
	applyCR(t, te.client, spec)
	// The fake Gatekeeper generates no policy: the features stay Pending, but the objects are
	// in place.
	waitPolicy(t, te.client, map[string][]string{"psc-deny": {"privilegedContainers"}, "psc-warn": {"hostNamespaces"}})
	con := &unstructured.Unstructured{}
	con.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
	eventually(t, waitTimeout, func() error {
		if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-deny"}, con); err != nil {
			return err
		}
		if !templates.BindsVAP(con) {
			return fmt.Errorf("psc-deny does not name %s yet", templates.EnforcementPointVAP)
		}
		return nil
	})
	time.Sleep(time.Second) // let in-flight reconciles finish
	te.applyLog.take()

	spec.ValidatingAdmissionPolicy = nil
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	log := te.applyLog.take()
	deny := slices.Index(log, templates.PolicyKind+"/psc-deny")
	tmpl := slices.Index(log, "ConstraintTemplate/"+templates.PolicyTemplateName)
	if deny < 0 || tmpl < 0 || deny > tmpl {
		t.Errorf("applies %v: want psc-deny (losing %s) applied before the policy template", log, templates.EnforcementPointVAP)
	}
	if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-deny"}, con); err != nil {
		t.Fatal(err)
	}
	if templates.BindsVAP(con) {
		t.Errorf("psc-deny still names %s", templates.EnforcementPointVAP)
	}
}
