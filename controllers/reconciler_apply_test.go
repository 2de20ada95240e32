package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

func testApplyAndPrune(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	applyCR(t, te.client, specWith("privilegedContainers", "hostNamespaces", "capabilities"))
	obj := waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "hostNamespaces", "capabilities"))
	if obj.Status.EnabledFeatures != 3 || obj.Status.EnforcedFeatures != 3 {
		t.Errorf("enabled/enforced = %d/%d, want 3/3", obj.Status.EnabledFeatures, obj.Status.EnforcedFeatures)
	}
	if len(obj.Status.Features) != len(templates.Features()) {
		t.Errorf("status lists %d features, want all %d", len(obj.Status.Features), len(templates.Features()))
	}
	if got := featureStatusOf(obj, "sysctls").State; got != v1alpha1.FeatureDisabled {
		t.Errorf("sysctls state %q, want Disabled", got)
	}

	// Zero counts are written too: printer columns would show them empty otherwise.
	raw := &unstructured.Unstructured{}
	raw.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("PodSecurityConstraints"))
	if err := te.client.Get(context.Background(), client.ObjectKey{Name: v1alpha1.ClusterName}, raw); err != nil {
		t.Fatal(err)
	}
	if v, found, _ := unstructured.NestedInt64(raw.Object, "status", "totalViolations"); !found || v != 0 {
		t.Errorf("status.totalViolations = %d (present: %v), want a stored 0", v, found)
	}

	// The constraint carries what the spec says, and our labels only.
	con := &unstructured.Unstructured{}
	con.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
	if err := te.client.Get(context.Background(), client.ObjectKey{Name: "psc-deny"}, con); err != nil {
		t.Fatal(err)
	}
	drops, _, _ := unstructured.NestedStringSlice(con.Object, "spec", "parameters", "features", "capabilities", "requiredDropCapabilities")
	if fmt.Sprint(drops) != "[ALL]" {
		t.Errorf("constraint parameters.features.capabilities.requiredDropCapabilities = %v, want [ALL]", drops)
	}
	if cs := featureStatusOf(obj, "capabilities"); cs.ConstraintName != "psc-deny" || cs.ConstraintKind != templates.PolicyKind || cs.TemplateName != templates.PolicyTemplateName {
		t.Errorf("capabilities names its objects %s/%s (template %s), want %s/psc-deny (template %s)",
			cs.ConstraintKind, cs.ConstraintName, cs.TemplateName, templates.PolicyKind, templates.PolicyTemplateName)
	}
	excluded, _, _ := unstructured.NestedStringSlice(con.Object, "spec", "match", "excludedNamespaces")
	if fmt.Sprint(excluded) != "[kube-system psc-system gatekeeper-system]" {
		t.Errorf("excludedNamespaces = %v", excluded)
	}
	if len(con.GetOwnerReferences()) != 1 || con.GetOwnerReferences()[0].Name != v1alpha1.ClusterName {
		t.Errorf("owner references = %v, want the CR", con.GetOwnerReferences())
	}

	// Switching features off takes them out of the constraint; switching one on adds it.
	applyCR(t, te.client, specWith("hostNamespaces", "sysctls"))
	waitPolicy(t, te.client, denyOnly("hostNamespaces", "sysctls"))
	obj = waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	if got := featureStatusOf(obj, "privilegedContainers").State; got != v1alpha1.FeatureDisabled {
		t.Errorf("privilegedContainers state %q after disabling, want Disabled", got)
	}
}

func testMasterSwitch(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	spec := specWith("privilegedContainers", "hostNamespaces")
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "hostNamespaces"))

	spec.Enabled = ptr.To(false)
	applyCR(t, te.client, spec)
	waitObjects(t, te.client, nil)
	obj := waitReady(t, te.client, metav1.ConditionTrue, ReasonMasterSwitchOff)
	if obj.Status.EnabledFeatures != 0 {
		t.Errorf("enabled features %d with the master switch off, want 0", obj.Status.EnabledFeatures)
	}
	// The configuration is kept.
	if got := getCR(t, te.client); got.Spec.PrivilegedContainers == nil || !got.Spec.PrivilegedContainers.Enabled {
		t.Errorf("the spec was changed: %+v", got.Spec)
	}

	spec.Enabled = ptr.To(true)
	applyCR(t, te.client, spec)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "hostNamespaces"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
}

func testDriftIsRestored(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	ctx := context.Background()
	applyCR(t, te.client, specWith("privilegedContainers"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	const conName = "psc-deny"

	// A hand edit of a field we own is reverted.
	con := &unstructured.Unstructured{}
	con.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
	if err := te.client.Get(ctx, client.ObjectKey{Name: conName}, con); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(con.Object, "dryrun", "spec", "enforcementAction"); err != nil {
		t.Fatal(err)
	}
	if err := te.client.Update(ctx, con); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() error {
		if err := te.client.Get(ctx, client.ObjectKey{Name: conName}, con); err != nil {
			return err
		}
		if a, _, _ := unstructured.NestedString(con.Object, "spec", "enforcementAction"); a != "scoped" || templates.ConstraintAction(con) != "deny" {
			return fmt.Errorf("enforcementAction is %q (%s)", a, templates.ConstraintAction(con))
		}
		return nil
	})

	// A deleted constraint comes back, and so does a deleted template (and with it the
	// constraint, which Gatekeeper removes along with the template's CRD).
	oldUID := con.GetUID()
	if err := te.client.Delete(ctx, con); err != nil {
		t.Fatal(err)
	}
	waitRecreated(t, te.client, con, oldUID)
	tmpl := &unstructured.Unstructured{}
	tmpl.SetGroupVersionKind(templates.TemplateGVK)
	if err := te.client.Get(ctx, client.ObjectKey{Name: templates.PolicyTemplateName}, tmpl); err != nil {
		t.Fatal(err)
	}
	oldTemplateUID := tmpl.GetUID()
	if err := te.client.Delete(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	waitRecreated(t, te.client, tmpl, oldTemplateUID)
	// Whether the constraint went with the template depends on how fast Gatekeeper (here the
	// fake) removed the CRD; either way it must be there in the end.
	waitPolicy(t, te.client, denyOnly("privilegedContainers"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
}

// testConstraintCRDRemoved: Gatekeeper removes a template's constraint CRD, and every
// constraint with it, when the template is deleted. When the template comes back quickly (a
// GitOps prune and re-apply, the master switch off and on), a constraint the operator applied
// in between can go with the old CRD. Once Gatekeeper (here the fake) has created the CRD
// again, the operator must watch the kind again and apply the constraint again.
func testConstraintCRDRemoved(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	ctx := context.Background()
	applyCR(t, te.client, specWith("privilegedContainers"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	con := &unstructured.Unstructured{}
	con.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
	if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-deny"}, con); err != nil {
		t.Fatal(err)
	}
	oldUID := con.GetUID()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := te.client.Get(ctx, client.ObjectKey{Name: constraintCRDName(templates.PolicyKind)}, crd); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := te.client.Delete(ctx, crd); err != nil {
		t.Fatal(err)
	}
	waitRecreated(t, te.client, con, oldUID)
	waitPolicy(t, te.client, denyOnly("privilegedContainers"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	t.Logf("constraint applied again and enforced %v after its CRD was deleted", time.Since(start).Round(time.Millisecond))
}

// waitRecreated waits until an object of that kind and name exists with another UID.
func waitRecreated(t *testing.T, c client.Client, obj *unstructured.Unstructured, old types.UID) {
	t.Helper()
	eventually(t, waitTimeout, func() error {
		if err := c.Get(context.Background(), client.ObjectKey{Name: obj.GetName()}, obj); err != nil {
			return err
		}
		if obj.GetUID() == old {
			return fmt.Errorf("%s %s not recreated yet", obj.GetKind(), obj.GetName())
		}
		return nil
	})
}
