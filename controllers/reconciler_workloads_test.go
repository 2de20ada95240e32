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

// ourExpansions lists the names of our ExpansionTemplates, sorted.
func ourExpansions(t *testing.T, c client.Client) []string {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(templates.ExpansionGVK.GroupVersion().WithKind("ExpansionTemplateList"))
	if err := c.List(context.Background(), list, client.MatchingLabels{templates.LabelManagedBy: templates.ManagedByValue}); err != nil {
		if meta.IsNoMatchError(err) {
			return nil
		}
		t.Fatal(err)
	}
	var out []string
	for _, o := range list.Items {
		if o.GetDeletionTimestamp().IsZero() {
			out = append(out, o.GetName())
		}
	}
	sort.Strings(out)
	return out
}

func expectedExpansions(spec *v1alpha1.PodSecurityConstraintsSpec) []string {
	var out []string
	for _, w := range templates.WorkloadKinds(spec) {
		out = append(out, w.ExpansionName())
	}
	sort.Strings(out)
	return out
}

func waitExpansions(t *testing.T, c client.Client, want []string) {
	t.Helper()
	eventually(t, waitTimeout, func() error {
		if got := ourExpansions(t, c); !slices.Equal(got, want) {
			return fmt.Errorf("expansion templates %v, want %v", got, want)
		}
		return nil
	})
}

// waitWorkloads waits until WorkloadsChecked has the status and reason for the current
// generation.
func waitWorkloads(t *testing.T, c client.Client, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var cond metav1.Condition
	eventually(t, waitTimeout, func() error {
		obj := getCR(t, c)
		found := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionWorkloadsChecked)
		if found == nil || found.Status != status || found.Reason != reason || found.ObservedGeneration != obj.Generation {
			return fmt.Errorf("WorkloadsChecked is %+v, want %s/%s at generation %d", found, status, reason, obj.Generation)
		}
		cond = *found
		return nil
	})
	return cond
}

// testWorkloadExpansions: the ExpansionTemplates are applied with the features, restored after
// drift, pruned when workloads are switched off and by the master switch, and never change
// Ready.
func testWorkloadExpansions(t *testing.T, te *testEnv, fg *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	ctx := context.Background()
	spec := specWith("privilegedContainers", "hostNamespaces")
	spec.Workloads = &v1alpha1.Workloads{ExtraKinds: []v1alpha1.WorkloadKind{
		{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout", TemplatePath: "spec.template"},
	}}
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	want := expectedExpansions(&spec)
	if len(want) != 8 {
		t.Fatalf("expected 7 built-in kinds and 1 extra, got %v", want)
	}
	waitExpansions(t, te.client, want)
	cond := waitWorkloads(t, te.client, metav1.ConditionTrue, ReasonWorkloadsChecked)
	if !strings.Contains(cond.Message, "8 workload kinds") {
		t.Errorf("WorkloadsChecked message %q does not count the kinds", cond.Message)
	}

	et := &unstructured.Unstructured{}
	et.SetGroupVersionKind(templates.ExpansionGVK)
	if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-cronjob"}, et); err != nil {
		t.Fatal(err)
	}
	if src, _, _ := unstructured.NestedString(et.Object, "spec", "templateSource"); src != "spec.jobTemplate.spec.template" {
		t.Errorf("CronJob templateSource %q", src)
	}
	if len(et.GetOwnerReferences()) != 1 || et.GetOwnerReferences()[0].Name != v1alpha1.ClusterName {
		t.Errorf("owner references = %v, want the CR", et.GetOwnerReferences())
	}

	// Drift: a deleted ExpansionTemplate comes back, an edited one is set right.
	if err := te.client.Delete(ctx, et); err != nil {
		t.Fatal(err)
	}
	rollout := &unstructured.Unstructured{}
	rollout.SetGroupVersionKind(templates.ExpansionGVK)
	if err := te.client.Get(ctx, client.ObjectKey{Name: "psc-rollout.argoproj.io"}, rollout); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(rollout.Object, "spec.other", "spec", "templateSource"); err != nil {
		t.Fatal(err)
	}
	if err := te.client.Update(ctx, rollout); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() error {
		for name, source := range map[string]string{"psc-cronjob": "spec.jobTemplate.spec.template", "psc-rollout.argoproj.io": "spec.template"} {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(templates.ExpansionGVK)
			if err := te.client.Get(ctx, client.ObjectKey{Name: name}, live); err != nil {
				return err
			}
			if got, _, _ := unstructured.NestedString(live.Object, "spec", "templateSource"); got != source {
				return fmt.Errorf("%s templateSource %q, want %q", name, got, source)
			}
		}
		return nil
	})

	// A Gatekeeper that does not expand never reports a new ExpansionTemplate: the condition
	// names it and says why, Ready stays true; once Gatekeeper loads it, workloads are checked.
	fg.setExpansion(false)
	spec.Workloads.ExtraKinds = append(spec.Workloads.ExtraKinds, v1alpha1.WorkloadKind{Group: "example.com", Version: "v1", Kind: "Runner", TemplatePath: "spec.template"})
	applyCR(t, te.client, spec)
	cond = waitWorkloads(t, te.client, metav1.ConditionFalse, ReasonExpansionNotReported)
	for _, want := range []string{"psc-runner.example.com", "--enable-generator-resource-expansion=false"} {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("WorkloadsChecked message %q lacks %q", cond.Message, want)
		}
	}
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	fg.setExpansion(true)
	waitWorkloads(t, te.client, metav1.ConditionTrue, ReasonWorkloadsChecked)
	spec.Workloads.ExtraKinds = spec.Workloads.ExtraKinds[:1]
	applyCR(t, te.client, spec)
	waitExpansions(t, te.client, want)

	// Workloads off: the ExpansionTemplates go, the features stay enforced.
	spec.Workloads.Enabled = ptr.To(false)
	applyCR(t, te.client, spec)
	waitExpansions(t, te.client, nil)
	waitWorkloads(t, te.client, metav1.ConditionFalse, ReasonWorkloadsDisabled)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "hostNamespaces"))

	// On again, then the master switch off: everything goes.
	spec.Workloads.Enabled = ptr.To(true)
	applyCR(t, te.client, spec)
	waitExpansions(t, te.client, want)
	spec.Enabled = ptr.To(false)
	applyCR(t, te.client, spec)
	waitReady(t, te.client, metav1.ConditionTrue, ReasonMasterSwitchOff)
	waitExpansions(t, te.client, nil)
	waitObjects(t, te.client, nil)
	waitWorkloads(t, te.client, metav1.ConditionFalse, ReasonMasterSwitchOff)

	// An ExpansionTemplate someone else wrote is never touched.
	foreign := &unstructured.Unstructured{Object: map[string]interface{}{"spec": map[string]interface{}{
		"applyTo":        []interface{}{map[string]interface{}{"groups": []interface{}{"apps"}, "versions": []interface{}{"v1"}, "kinds": []interface{}{"Deployment"}}},
		"templateSource": "spec.template",
		"generatedGVK":   map[string]interface{}{"version": "v1", "kind": "Pod"},
	}}}
	foreign.SetGroupVersionKind(templates.ExpansionGVK)
	foreign.SetName("someone-elses")
	if err := te.client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = te.client.Delete(ctx, foreign) }()
	spec.Enabled = ptr.To(true)
	applyCR(t, te.client, spec)
	waitExpansions(t, te.client, want)
	deleteCR(t, te.client)
	waitExpansions(t, te.client, nil)
	if err := te.client.Get(ctx, client.ObjectKey{Name: "someone-elses"}, foreign); err != nil {
		t.Errorf("an unlabelled ExpansionTemplate was touched: %v", err)
	}
}

// TestGatekeeperWithoutExpansion: a Gatekeeper without the ExpansionTemplate CRD still gets
// every feature enforced on Pods; WorkloadsChecked says that workloads are not checked and
// why, and Ready stays true.
func TestGatekeeperWithoutExpansion(t *testing.T) {
	te := startEnv(t, false)
	dir := t.TempDir()
	entries, err := os.ReadDir(gatekeeperCRDDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "expansiontemplate") {
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
		t.Fatalf("installing Gatekeeper's CRDs without ExpansionTemplate: %v", err)
	}
	startFakeGatekeeper(t, te.client)

	applyCR(t, te.client, specWith("privilegedContainers", "hostNamespaces"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitPolicy(t, te.client, denyOnly("privilegedContainers", "hostNamespaces"))
	cond := waitWorkloads(t, te.client, metav1.ConditionFalse, ReasonExpansionUnavailable)
	for _, want := range []string{templates.ExpansionCRDName, "workloads are not checked at apply time", "Pods are still checked"} {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("WorkloadsChecked message %q lacks %q", cond.Message, want)
		}
	}
	obj := getCR(t, te.client)
	if obj.Status.EnforcedFeatures != 2 {
		t.Errorf("enforced features %d, want 2", obj.Status.EnforcedFeatures)
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(templates.ExpansionGVK.GroupVersion().WithKind("ExpansionTemplateList"))
	if err := te.client.List(context.Background(), list); err == nil || !(meta.IsNoMatchError(err) || apierrors.IsNotFound(err)) {
		t.Errorf("listing ExpansionTemplates: %v, want no such kind", err)
	}
	deleteCR(t, te.client)
}
