//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// TestPolicyLayout: the operator turns the enabled features into ONE ConstraintTemplate
// (pscpodsecurity) and one PSCPodSecurity constraint per enforcement action, plus one for each
// feature with excludedNamespaces of its own; each constraint lists its features in
// spec.parameters.features and the CR's status names it. Switching a feature off is a change of
// its constraint's parameters only: the template is not written (same UID, generation and
// resourceVersion), the other constraints are not either, and a constraint left with no
// feature is deleted.
func TestPolicyLayout(t *testing.T) {
	startScenario(t)
	ctx := context.Background()
	ns := newNamespace(t, "layout")
	excluded := newNamespace(t, "layout-excl")
	spec := map[string]interface{}{
		"privilegedContainers": map[string]interface{}{"enabled": true},
		"hostNamespaces":       map[string]interface{}{"enabled": true},
		"procMount":            map[string]interface{}{"enabled": true, "enforcementAction": "warn"},
		"hostNetworking":       map[string]interface{}{"enabled": true, "excludedNamespaces": []interface{}{excluded}},
	}
	denyName, warnName := templates.ConstraintName("deny"), templates.ConstraintName("warn")
	hostNetName := wantConstraintName(t, spec, "hostNetworking")
	if hostNetName != "psc-host-networking" {
		t.Fatalf("wantConstraintName(hostNetworking) = %q, want psc-host-networking", hostNetName)
	}

	gen := setSpec(t, spec)
	took := waitReady(t, gen, enforceTimeout)
	t.Logf("CONVERGENCE fresh CR, 4 features in 3 constraints: all Enforced and Ready=True %s after the create", took.Round(10*time.Millisecond))

	// What exists: one template, three constraints, each with its features.
	wantObjects := []string{
		templates.PolicyKind + "/" + denyName, templates.PolicyKind + "/" + hostNetName, templates.PolicyKind + "/" + warnName,
		"ConstraintTemplate/" + templates.PolicyTemplateName,
	}
	expectGeneratedObjects(t, wantObjects)
	tmpl := policyTemplate()
	if found, err := getObject(ctx, tmpl); err != nil || !found {
		t.Fatalf("ConstraintTemplate %s: found %v, err %v", templates.PolicyTemplateName, found, err)
	}
	if kind, _, _ := unstructured.NestedString(tmpl.Object, "spec", "crd", "spec", "names", "kind"); kind != templates.PolicyKind {
		t.Errorf("template %s makes constraint kind %q, want %s", tmpl.GetName(), kind, templates.PolicyKind)
	}
	expectPolicyLabels(t, tmpl)
	wantFeatures := map[string][]string{
		denyName:    {"hostNamespaces", "privilegedContainers"},
		warnName:    {"procMount"},
		hostNetName: {"hostNetworking"},
	}
	expectConstraints(t, wantFeatures)
	hostNet := policyConstraint(hostNetName)
	if _, err := getObject(ctx, hostNet); err == nil {
		if ex, _, _ := unstructured.NestedStringSlice(hostNet.Object, "spec", "match", "excludedNamespaces"); !contains(ex, excluded) {
			t.Errorf("constraint %s excludes %v, want %s among them", hostNetName, ex, excluded)
		}
	}
	deny := policyConstraint(denyName)
	if _, err := getObject(ctx, deny); err == nil {
		if ex, _, _ := unstructured.NestedStringSlice(deny.Object, "spec", "match", "excludedNamespaces"); contains(ex, excluded) {
			t.Errorf("constraint %s excludes %s, which only hostNetworking excludes", denyName, excluded)
		}
	}
	cr := mustGetCR(t)
	for name, features := range wantFeatures {
		for _, f := range features {
			expectEnforcedBy(t, cr, f, name)
		}
	}
	// The denial names the constraint: psc-deny for a privileged pod.
	_, err := createPod(privilegedPod(ns, "privileged", "nginx"))
	expectDenied(t, "privileged pod", err, "["+denyName+"] "+privilegedMessage)

	// Gatekeeper writes the template's status for a moment after creating it; the audit writes
	// the constraints' status every cycle. So the template is compared once it has settled, and
	// the constraints by UID, generation and the writes to their spec (managedFields).
	waitSettled(t, policyTemplate(), 3*time.Second)
	before := snapshot(t, policyTemplate(), policyConstraint(denyName), policyConstraint(warnName), policyConstraint(hostNetName))

	// hostNamespaces off: psc-deny loses it, nothing else is written.
	spec = deepCopyMap(spec)
	spec["hostNamespaces"] = map[string]interface{}{"enabled": false}
	gen = setSpec(t, spec)
	ready := waitReady(t, gen, enforceTimeout)
	took = eventuallyAdmitted(t, 30*time.Second, "a hostPID pod after hostNamespaces was switched off", func(i int) *corev1.Pod {
		return hostPIDPod(ns, fmt.Sprintf("host-pid-%d", i))
	})
	t.Logf("hostNamespaces off: Ready %s after the change; a hostPID pod admitted %s after that", ready.Round(10*time.Millisecond), took.Round(10*time.Millisecond))
	wantFeatures[denyName] = []string{"privilegedContainers"}
	expectConstraints(t, wantFeatures)
	after := snapshot(t, policyTemplate(), policyConstraint(denyName), policyConstraint(warnName), policyConstraint(hostNetName))
	expectUnwritten(t, before, after, "ConstraintTemplate/"+templates.PolicyTemplateName, true, "switching hostNamespaces off")
	expectUnwritten(t, before, after, templates.PolicyKind+"/"+warnName, false, "switching hostNamespaces off")
	expectUnwritten(t, before, after, templates.PolicyKind+"/"+hostNetName, false, "switching hostNamespaces off")
	if b, a := before[templates.PolicyKind+"/"+denyName], after[templates.PolicyKind+"/"+denyName]; b.uid != a.uid || a.generation <= b.generation {
		t.Errorf("constraint %s: uid %s -> %s, generation %d -> %d; want updated in place", denyName, b.uid, a.uid, b.generation, a.generation)
	}
	if fs, _ := featureStatus(mustGetCR(t), "hostNamespaces"); fs.State != v1alpha1.FeatureDisabled {
		t.Errorf("status of hostNamespaces after switching it off: %+v, want Disabled", fs)
	}
	_, err = createPod(privilegedPod(ns, "privileged-after", "nginx"))
	expectDenied(t, "privileged pod after hostNamespaces was switched off", err, "["+denyName+"] "+privilegedMessage)

	// procMount off: psc-warn has no feature left and is deleted; the template stays unwritten.
	spec = deepCopyMap(spec)
	spec["procMount"] = map[string]interface{}{"enabled": false}
	gen = setSpec(t, spec)
	waitReady(t, gen, enforceTimeout)
	eventually(t, 30*time.Second, "constraint "+warnName+" to be deleted", func() (bool, string) {
		_, found, err := constraintFeatures(ctx, warnName)
		return err == nil && !found, fmt.Sprintf("found %v, err %v", found, err)
	})
	expectGeneratedObjects(t, []string{
		templates.PolicyKind + "/" + denyName, templates.PolicyKind + "/" + hostNetName, "ConstraintTemplate/" + templates.PolicyTemplateName,
	})
	final := snapshot(t, policyTemplate())
	expectUnwritten(t, before, final, "ConstraintTemplate/"+templates.PolicyTemplateName, true, "switching procMount off")
}

// objectVersion is what tells whether an object was written.
type objectVersion struct {
	uid             string
	generation      int64
	resourceVersion string
	// specWrites are the managedFields entries of the main resource (not the status): manager,
	// operation and time of the last write of each.
	specWrites string
}

// snapshot reads the objects' versions, keyed by kind/name; each must exist.
func snapshot(t *testing.T, objs ...*unstructured.Unstructured) map[string]objectVersion {
	t.Helper()
	out := map[string]objectVersion{}
	for _, u := range objs {
		if found, err := getObject(context.Background(), u); err != nil || !found {
			t.Fatalf("%s %s: found %v, err %v", u.GetKind(), u.GetName(), found, err)
		}
		var writes []string
		for _, m := range u.GetManagedFields() {
			if m.Subresource != "" {
				continue
			}
			ts := ""
			if m.Time != nil {
				ts = m.Time.UTC().Format(time.RFC3339)
			}
			writes = append(writes, fmt.Sprintf("%s/%s@%s", m.Manager, m.Operation, ts))
		}
		out[u.GetKind()+"/"+u.GetName()] = objectVersion{
			uid: string(u.GetUID()), generation: u.GetGeneration(), resourceVersion: u.GetResourceVersion(), specWrites: strings.Join(writes, ", "),
		}
	}
	return out
}

// expectUnwritten fails if the object key was written between two snapshots: another UID,
// generation or write to its spec; with strict, any write at all (resourceVersion), which only
// holds for an object nobody else writes meanwhile.
func expectUnwritten(t *testing.T, before, after map[string]objectVersion, key string, strict bool, what string) {
	t.Helper()
	b, a := before[key], after[key]
	if !strict {
		b.resourceVersion, a.resourceVersion = "", ""
	}
	if b != a {
		t.Errorf("%s was written by %s:\n  before: %+v\n  after:  %+v", key, what, b, a)
	}
}

// waitSettled waits until obj's resourceVersion has not changed for quiet (at most 30 s).
func waitSettled(t *testing.T, obj *unstructured.Unstructured, quiet time.Duration) {
	t.Helper()
	last, since := "", time.Now()
	eventually(t, 30*time.Second, fmt.Sprintf("%s %s to settle", obj.GetKind(), obj.GetName()), func() (bool, string) {
		u := obj.DeepCopy()
		if found, err := getObject(context.Background(), u); err != nil || !found {
			return false, fmt.Sprintf("found %v, err %v", found, err)
		}
		if rv := u.GetResourceVersion(); rv != last {
			last, since = rv, time.Now()
		}
		return time.Since(since) >= quiet, "resourceVersion " + last + " since " + time.Since(since).String()
	})
}

// expectGeneratedObjects fails unless the operator's policy objects are exactly want (sorted).
func expectGeneratedObjects(t *testing.T, want []string) {
	t.Helper()
	got, err := generatedObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != strings.Join(sorted(want), ",") {
		t.Errorf("generated objects %v, want %v", got, sorted(want))
	}
}

// expectConstraints fails unless each named constraint exists with exactly the features given
// (sorted) in its parameters.features and the policy labels.
func expectConstraints(t *testing.T, want map[string][]string) {
	t.Helper()
	for name, features := range want {
		c := policyConstraint(name)
		if found, err := getObject(context.Background(), c); err != nil || !found {
			t.Errorf("constraint %s: found %v, err %v", name, found, err)
			continue
		}
		got, _, _ := unstructured.NestedMap(c.Object, "spec", "parameters", "features")
		if strings.Join(sortedKeys(got), ",") != strings.Join(sorted(features), ",") {
			t.Errorf("constraint %s enforces %v, want %v", name, sortedKeys(got), sorted(features))
		}
		expectPolicyLabels(t, c)
	}
}

// expectPolicyLabels: the policy template and its constraints carry the managed-by and
// component labels, and no feature label (they serve several features).
func expectPolicyLabels(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	l := u.GetLabels()
	if l[templates.LabelManagedBy] != templates.ManagedByValue || l[templates.LabelComponent] != templates.ComponentPolicy {
		t.Errorf("%s %s: labels %v, want %s=%s and %s=%s", u.GetKind(), u.GetName(), l,
			templates.LabelManagedBy, templates.ManagedByValue, templates.LabelComponent, templates.ComponentPolicy)
	}
	if f, ok := l[templates.LabelFeature]; ok {
		t.Errorf("%s %s has feature label %q; it serves several features", u.GetKind(), u.GetName(), f)
	}
}

// TestUpgradeFromPerFeatureLayout: a ConstraintTemplate of the per-feature layout of earlier
// releases (pschostnamespaces, kind PSCHostNamespaces, with the operator's label) and its
// constraint are pruned once the one template enforces every feature (make before break): Gatekeeper stops
// enforcing it, the garbage collector removes its constraint CRD, and pods are judged by
// psc-deny alone.
func TestUpgradeFromPerFeatureLayout(t *testing.T) {
	startScenario(t)
	ctx := context.Background()
	ns := newNamespace(t, "upgrade")
	const (
		oldTemplate   = "pschostnamespaces"
		oldKind       = "PSCHostNamespaces"
		oldConstraint = "psc-host-namespaces"
		oldMessage    = "old-layout: hostPID"
	)
	labels := map[string]interface{}{templates.LabelManagedBy: templates.ManagedByValue, templates.LabelFeature: "hostNamespaces"}
	tmpl := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": templates.TemplateGVK.GroupVersion().String(), "kind": "ConstraintTemplate",
		"metadata": map[string]interface{}{"name": oldTemplate, "labels": labels},
		"spec": map[string]interface{}{
			"crd": map[string]interface{}{"spec": map[string]interface{}{"names": map[string]interface{}{"kind": oldKind}}},
			"targets": []interface{}{map[string]interface{}{
				"target": "admission.k8s.gatekeeper.sh",
				"code": []interface{}{map[string]interface{}{"engine": "Rego", "source": map[string]interface{}{
					"version": "v1",
					"rego":    "package " + oldTemplate + "\n\nviolation contains {\"msg\": \"" + oldMessage + "\"} if input.review.object.spec.hostPID == true\n",
				}}},
			}},
		},
	}}
	constraint := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": templates.ConstraintGroupVersion.String(), "kind": oldKind,
		"metadata": map[string]interface{}{"name": oldConstraint, "labels": labels},
		"spec": map[string]interface{}{
			"enforcementAction": "deny",
			"match":             map[string]interface{}{"kinds": []interface{}{map[string]interface{}{"apiGroups": []interface{}{""}, "kinds": []interface{}{"Pod"}}}},
		},
	}}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tmpl.DeepCopy()) })
	if err := k8s.Create(ctx, tmpl.DeepCopy()); err != nil {
		t.Fatalf("creating the old-layout template %s: %v", oldTemplate, err)
	}
	eventually(t, 60*time.Second, "the old-layout constraint to be created", func() (bool, string) {
		err := k8s.Create(ctx, constraint.DeepCopy())
		return err == nil, fmt.Sprintf("%v", err)
	})
	eventually(t, 30*time.Second, "the old-layout constraint to deny a hostPID pod", func() (bool, string) {
		_, err := clientset.CoreV1().Pods(ns).Create(ctx, hostPIDPod(ns, "old"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "["+oldConstraint+"] "+oldMessage), fmt.Sprintf("%v", err)
	})

	// The upgraded operator: the same feature, now in psc-deny; the old template is pruned.
	gen := setSpec(t, map[string]interface{}{"hostNamespaces": map[string]interface{}{"enabled": true}})
	start := time.Now()
	waitReady(t, gen, enforceTimeout)
	crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: strings.ToLower(oldKind) + ".constraints.gatekeeper.sh"}}
	eventually(t, 60*time.Second, "the old-layout template and its constraint CRD to be gone", func() (bool, string) {
		found, err := getObject(ctx, tmpl.DeepCopy())
		crdErr := k8s.Get(ctx, client.ObjectKeyFromObject(crd), &apiextensionsv1.CustomResourceDefinition{})
		return err == nil && !found && apierrors.IsNotFound(crdErr), fmt.Sprintf("template found %v (err %v), CRD: %v", found, err, crdErr)
	})
	t.Logf("old-layout template pruned and its constraint CRD gone %s after the spec was applied", time.Since(start).Round(10*time.Millisecond))
	expectGeneratedObjects(t, []string{templates.PolicyKind + "/" + templates.ConstraintName("deny"), "ConstraintTemplate/" + templates.PolicyTemplateName})
	eventually(t, 30*time.Second, "a hostPID pod to be denied by psc-deny alone", func() (bool, string) {
		_, err := clientset.CoreV1().Pods(ns).Create(ctx, hostPIDPod(ns, "new"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "["+templates.ConstraintName("deny")+"] "+hostPIDMessage) && !strings.Contains(err.Error(), oldMessage),
			fmt.Sprintf("%v", err)
	})
}
