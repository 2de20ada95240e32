package controllers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// ourMutators lists "Kind/name" of our Assign and ModifySet objects, sorted.
func ourMutators(t *testing.T, c client.Client) []string {
	t.Helper()
	var out []string
	for _, gvk := range []string{"Assign", "ModifySet"} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(templates.MutationGroupVersion.WithKind(gvk + "List"))
		if err := c.List(context.Background(), list, client.MatchingLabels{templates.LabelManagedBy: templates.ManagedByValue}); err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				continue
			}
			t.Fatal(err)
		}
		for _, o := range list.Items {
			if o.GetDeletionTimestamp().IsZero() {
				out = append(out, o.GetKind()+"/"+o.GetName())
			}
		}
	}
	sort.Strings(out)
	return out
}

// expectedMutators renders the spec like the operator and lists its mutators.
func expectedMutators(t *testing.T, spec v1alpha1.PodSecurityConstraintsSpec) []string {
	t.Helper()
	inv, err := templates.Render(&spec, templates.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range inv.Objects(templates.RoleMutator) {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

func waitMutators(t *testing.T, c client.Client, want []string) {
	t.Helper()
	eventually(t, waitTimeout, func() error {
		if got := ourMutators(t, c); !slices.Equal(got, want) {
			return fmt.Errorf("mutators %v, want %v", got, want)
		}
		return nil
	})
}

// waitDefaults waits until DefaultsActive has the status and reason for the current generation.
func waitDefaults(t *testing.T, c client.Client, status metav1.ConditionStatus, reason string) (metav1.Condition, *v1alpha1.PodSecurityConstraints) {
	t.Helper()
	var cond metav1.Condition
	var obj *v1alpha1.PodSecurityConstraints
	eventually(t, waitTimeout, func() error {
		obj = getCR(t, c)
		found := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionDefaultsActive)
		if found == nil || found.Status != status || found.Reason != reason || found.ObservedGeneration != obj.Generation {
			return fmt.Errorf("DefaultsActive is %+v, want %s/%s at generation %d", found, status, reason, obj.Generation)
		}
		cond = *found
		return nil
	})
	return cond, obj
}

// testDefaultsMutators: with setDefaults the features' mutators are applied, reported active,
// restored after drift and pruned when defaults or the feature are switched off; mutators
// someone else wrote are never touched.
func testDefaultsMutators(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	ctx := context.Background()
	spec := specWith("privilegedContainers", "privilegeEscalation", "capabilities")
	spec.SetDefaults = ptr.To(true)
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	want := expectedMutators(t, spec)
	if len(want) != 8 {
		t.Fatalf("expected 4 Assign (privilegeEscalation) and 4 ModifySet (capabilities), got %v", want)
	}
	waitMutators(t, te.client, want)
	cond, obj := waitDefaults(t, te.client, metav1.ConditionTrue, ReasonDefaultsActive)
	if !strings.Contains(cond.Message, "2 features: privilegeEscalation, capabilities") {
		t.Errorf("DefaultsActive message %q", cond.Message)
	}
	for name, want := range map[string]v1alpha1.DefaultsState{"privilegeEscalation": v1alpha1.DefaultsActive, "capabilities": v1alpha1.DefaultsActive, "privilegedContainers": ""} {
		if got := featureStatusOf(obj, name).Defaults; got != want {
			t.Errorf("%s defaults %q, want %q", name, got, want)
		}
	}

	m := &unstructured.Unstructured{}
	m.SetGroupVersionKind(templates.AssignGVK)
	if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-privilege-escalation-default"}, m); err != nil {
		t.Fatal(err)
	}
	if len(m.GetOwnerReferences()) != 1 || m.GetOwnerReferences()[0].Name != v1alpha1.ClusterName {
		t.Errorf("owner references = %v, want the CR", m.GetOwnerReferences())
	}

	// Drift: a deleted mutator comes back, an edited one is set right.
	if err := te.client.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
	ms := &unstructured.Unstructured{}
	ms.SetGroupVersionKind(templates.ModifySetGVK)
	if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-capabilities-drop"}, ms); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedSlice(ms.Object, []interface{}{"NET_RAW"}, "spec", "parameters", "values", "fromList"); err != nil {
		t.Fatal(err)
	}
	if err := te.client.Update(ctx, ms); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() error {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(templates.AssignGVK)
		if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-privilege-escalation-default"}, live); err != nil {
			return err
		}
		live.SetGroupVersionKind(templates.ModifySetGVK)
		if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-capabilities-drop"}, live); err != nil {
			return err
		}
		if got, _, _ := unstructured.NestedStringSlice(live.Object, "spec", "parameters", "values", "fromList"); !slices.Equal(got, []string{"ALL"}) {
			return fmt.Errorf("drop values %v, want [ALL]", got)
		}
		return nil
	})

	// A feature's own setDefaults: false prunes its mutators; the feature stays enforced.
	spec.Capabilities.SetDefaults = ptr.To(false)
	applyCR(t, te.client, spec)
	want = expectedMutators(t, spec)
	if len(want) != 4 || strings.Contains(strings.Join(want, ","), "capabilities") {
		t.Fatalf("capabilities off: expected only privilegeEscalation's mutators, got %v", want)
	}
	waitMutators(t, te.client, want)
	_, obj = waitDefaults(t, te.client, metav1.ConditionTrue, ReasonDefaultsActive)
	if got := featureStatusOf(obj, "capabilities"); got.Defaults != "" || got.State != v1alpha1.FeatureEnforced {
		t.Errorf("capabilities: defaults %q state %q, want no defaults and enforced", got.Defaults, got.State)
	}

	// A mutator someone else wrote is never touched.
	foreign := &unstructured.Unstructured{Object: map[string]interface{}{"spec": map[string]interface{}{
		"applyTo":    []interface{}{map[string]interface{}{"groups": []interface{}{""}, "versions": []interface{}{"v1"}, "kinds": []interface{}{"Pod"}}},
		"location":   "spec.dnsPolicy",
		"parameters": map[string]interface{}{"assign": map[string]interface{}{"value": "Default"}},
	}}}
	foreign.SetGroupVersionKind(templates.AssignGVK)
	foreign.SetName("someone-elses")
	if err := te.client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = te.client.Delete(ctx, foreign) }()

	// The feature off, then defaults off everywhere: all mutators go, the rest stays.
	spec.PrivilegeEscalation = nil
	applyCR(t, te.client, spec)
	waitMutators(t, te.client, nil)
	cond, _ = waitDefaults(t, te.client, metav1.ConditionFalse, ReasonDefaultsOff)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	spec.PrivilegeEscalation = specWith("privilegeEscalation").PrivilegeEscalation
	applyCR(t, te.client, spec)
	waitMutators(t, te.client, expectedMutators(t, spec))
	spec.SetDefaults = ptr.To(false)
	applyCR(t, te.client, spec)
	waitMutators(t, te.client, nil)
	waitDefaults(t, te.client, metav1.ConditionFalse, ReasonDefaultsOff)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "privilegeEscalation", "capabilities"))

	// Deleting the CR prunes the mutators with everything else.
	spec.SetDefaults = ptr.To(true)
	applyCR(t, te.client, spec)
	waitMutators(t, te.client, expectedMutators(t, spec))
	deleteCR(t, te.client)
	waitMutators(t, te.client, nil)
	if err := te.client.Get(ctx, client.ObjectKey{Name: "someone-elses"}, foreign); err != nil {
		t.Errorf("an unlabelled Assign was touched: %v", err)
	}
}

// testDefaultsWithheldForExemptImages: features with exemptImages that follow spec.setDefaults
// get no mutators, and the status says why, per feature and in DefaultsActive; the feature's
// own setDefaults true or false settles it.
func testDefaultsWithheldForExemptImages(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	spec := specWith("privilegeEscalation", "capabilities")
	spec.SetDefaults = ptr.To(true)
	spec.ExemptImages = []v1alpha1.ImagePattern{"registry.example.com/debug/*"}
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	if want := expectedMutators(t, spec); len(want) != 0 {
		t.Fatalf("rendered %v for features with exemptImages that follow spec.setDefaults", want)
	}
	cond, obj := waitDefaults(t, te.client, metav1.ConditionFalse, ReasonDefaultsWithheld)
	for _, want := range []string{"privilegeEscalation (the feature exempts images (registry.example.com/debug/*)", "capabilities (the feature exempts images", "not filled in"} {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("DefaultsActive message %q lacks %q", cond.Message, want)
		}
	}
	for _, name := range []string{"privilegeEscalation", "capabilities"} {
		got := featureStatusOf(obj, name)
		if got.Defaults != v1alpha1.DefaultsWithheld || got.State != v1alpha1.FeatureEnforced || !strings.Contains(got.DefaultsMessage, name+".setDefaults: true") {
			t.Errorf("%s: defaults %q (%q) state %q, want Withheld with the way out, and Enforced", name, got.Defaults, got.DefaultsMessage, got.State)
		}
	}
	if got := ourMutators(t, te.client); len(got) != 0 {
		t.Errorf("mutators applied while withheld: %v", got)
	}

	// Opting in: every container is defaulted, exempt ones too; the other feature stays withheld.
	spec.PrivilegeEscalation.SetDefaults = ptr.To(true)
	applyCR(t, te.client, spec)
	want := expectedMutators(t, spec)
	if len(want) != 4 {
		t.Fatalf("privilegeEscalation opted in: expected its 4 mutators, got %v", want)
	}
	waitMutators(t, te.client, want)
	cond, obj = waitDefaults(t, te.client, metav1.ConditionFalse, ReasonDefaultsWithheld)
	if !strings.Contains(cond.Message, "active for 1 features: privilegeEscalation") || strings.Contains(cond.Message, "privilegeEscalation (") {
		t.Errorf("DefaultsActive message %q", cond.Message)
	}
	if got := featureStatusOf(obj, "privilegeEscalation"); got.Defaults != v1alpha1.DefaultsActive || got.DefaultsMessage != "" {
		t.Errorf("privilegeEscalation defaults %q (%q), want Active", got.Defaults, got.DefaultsMessage)
	}

	// Opting out of the other: nothing is withheld any more.
	spec.Capabilities.SetDefaults = ptr.To(false)
	applyCR(t, te.client, spec)
	_, obj = waitDefaults(t, te.client, metav1.ConditionTrue, ReasonDefaultsActive)
	if got := featureStatusOf(obj, "capabilities"); got.Defaults != "" || got.DefaultsMessage != "" {
		t.Errorf("capabilities defaults %q (%q), want none", got.Defaults, got.DefaultsMessage)
	}
	waitMutators(t, te.client, want)
}

// TestGatekeeperWithoutMutation: a Gatekeeper installed without mutation (no Assign and
// ModifySet CRDs) still gets every feature enforced; DefaultsActive and the features' status
// say that the defaults have no effect, and Ready stays true.
func TestGatekeeperWithoutMutation(t *testing.T) {
	te := startEnv(t, false)
	dir := t.TempDir()
	entries, err := os.ReadDir(gatekeeperCRDDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "assign") || strings.HasPrefix(e.Name(), "modifyset") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(gatekeeperCRDDir(t), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := envtest.InstallCRDs(te.cfg, envtest.CRDInstallOptions{Paths: []string{dir}}); err != nil {
		t.Fatalf("installing Gatekeeper's CRDs without mutation: %v", err)
	}
	startFakeGatekeeper(t, te.client)

	spec := specWith("privilegeEscalation", "capabilities")
	spec.SetDefaults = ptr.To(true)
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, denyOnly("privilegeEscalation", "capabilities"))
	cond, obj := waitDefaults(t, te.client, metav1.ConditionFalse, ReasonMutationUnavailable)
	for _, want := range []string{templates.AssignCRDName, "privilegeEscalation, capabilities", "still enforced"} {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("DefaultsActive message %q lacks %q", cond.Message, want)
		}
	}
	for _, name := range []string{"privilegeEscalation", "capabilities"} {
		if got := featureStatusOf(obj, name); got.Defaults != v1alpha1.DefaultsUnavailable || got.State != v1alpha1.FeatureEnforced {
			t.Errorf("%s: defaults %q state %q, want Unavailable and Enforced", name, got.Defaults, got.State)
		}
	}
	deleteCR(t, te.client)
}
