package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

const waitTimeout = 30 * time.Second

// eventually polls cond until it returns nil or the timeout passes, then fails with the last
// error.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// consistently fails if cond returns an error at any time during d.
func consistently(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := cond(); err != nil {
			t.Fatalf("condition broke: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// applyCR creates or replaces the spec of the cluster's PodSecurityConstraints, retrying when
// the operator's status write changed the object in between.
func applyCR(t *testing.T, c client.Client, spec v1alpha1.PodSecurityConstraintsSpec) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj := &v1alpha1.PodSecurityConstraints{}
		err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.ClusterName}, obj)
		if apierrors.IsNotFound(err) {
			obj = &v1alpha1.PodSecurityConstraints{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ClusterName}, Spec: spec}
			return c.Create(ctx, obj)
		}
		if err != nil {
			return err
		}
		obj.Spec = spec
		return c.Update(ctx, obj)
	})
	if err != nil {
		t.Fatalf("applying CR: %v", err)
	}
}

// deleteCR deletes the CR and waits until the finalizer let it go. After a failure it first
// logs the Gatekeeper objects as the failure left them (describe, logged later, shows them after
// this cleanup).
func deleteCR(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	if t.Failed() {
		t.Logf("before cleanup, at %s:\n%s", time.Now().UTC().Format("15:04:05.000"), describeGatekeeperObjects(ctx, c))
	}
	obj := &v1alpha1.PodSecurityConstraints{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ClusterName}}
	if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() error {
		err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.ClusterName}, obj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("CR still exists (finalizers %v): %v", obj.Finalizers, err)
	})
	// Gatekeeper (here the fake) removes the constraint CRD of each pruned template after
	// the CR is gone. Wait for that too: a behaviour that starts while an old CRD is still
	// terminating sees its constraints vanish with it and re-applied, which is right for the
	// operator but not what that behaviour is about.
	eventually(t, waitTimeout, func() error { return constraintCRDsSettled(ctx, c) })
}

// constraintCRDsSettled fails while a constraint CRD is terminating or has no template.
func constraintCRDsSettled(ctx context.Context, c client.Client) error {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(templates.TemplateGVK.GroupVersion().WithKind("ConstraintTemplateList"))
	if err := c.List(ctx, list); err != nil && !meta.IsNoMatchError(err) {
		return err
	}
	kinds := map[string]bool{}
	for _, tmpl := range list.Items {
		if kind := templateKind(&tmpl); kind != "" && tmpl.GetDeletionTimestamp().IsZero() {
			kinds[kind] = true
		}
	}
	crds := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := c.List(ctx, crds); err != nil {
		return err
	}
	for _, crd := range crds.Items {
		if crd.Spec.Group != constraintsGroup {
			continue
		}
		if !crd.DeletionTimestamp.IsZero() || !kinds[crd.Spec.Names.Kind] {
			return fmt.Errorf("constraint CRD %s is still being removed", crd.Name)
		}
	}
	return nil
}

func getCR(t *testing.T, c client.Client) *v1alpha1.PodSecurityConstraints {
	t.Helper()
	obj := &v1alpha1.PodSecurityConstraints{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: v1alpha1.ClusterName}, obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// waitReady waits until Ready has the given status and reason for the current generation.
func waitReady(t *testing.T, c client.Client, status metav1.ConditionStatus, reason string) *v1alpha1.PodSecurityConstraints {
	t.Helper()
	var obj *v1alpha1.PodSecurityConstraints
	eventually(t, waitTimeout, func() error {
		obj = &v1alpha1.PodSecurityConstraints{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: v1alpha1.ClusterName}, obj); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
		if cond == nil || cond.Status != status || cond.Reason != reason || cond.ObservedGeneration != obj.Generation {
			return fmt.Errorf("ready condition is %+v, want %s/%s at generation %d", cond, status, reason, obj.Generation)
		}
		return nil
	})
	return obj
}

// ourObjects lists the names of generated objects, as "Kind/name", sorted.
func ourObjects(t *testing.T, c client.Client) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	ours := client.MatchingLabels{templates.LabelManagedBy: templates.ManagedByValue}
	tl := &unstructured.UnstructuredList{}
	tl.SetGroupVersionKind(templates.TemplateGVK.GroupVersion().WithKind("ConstraintTemplateList"))
	if err := c.List(ctx, tl, ours); err != nil {
		t.Fatal(err)
	}
	for _, o := range tl.Items {
		if o.GetDeletionTimestamp().IsZero() && !isProbeObject(&o) {
			out = append(out, o.GetKind()+"/"+o.GetName())
		}
	}
	for _, kind := range []string{templates.PolicyKind} {
		cl := &unstructured.UnstructuredList{}
		cl.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(kind + "List"))
		if err := c.List(ctx, cl, ours); err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				continue
			}
			t.Fatal(err)
		}
		for _, o := range cl.Items {
			if o.GetDeletionTimestamp().IsZero() {
				out = append(out, o.GetKind()+"/"+o.GetName())
			}
		}
	}
	sort.Strings(out)
	return out
}

// policyObjects is what ourObjects returns when the policy template serves these constraints.
func policyObjects(constraints ...string) []string {
	out := []string{"ConstraintTemplate/" + templates.PolicyTemplateName}
	for _, name := range constraints {
		out = append(out, templates.PolicyKind+"/"+name)
	}
	sort.Strings(out)
	return out
}

// denyOnly is the policy of features all in deny without namespaces of their own (specWith):
// one constraint, psc-deny, enforcing them all.
func denyOnly(features ...string) map[string][]string {
	return map[string][]string{templates.ConstraintName("deny"): features}
}

// constraintFeatures lists the features a live constraint enforces (its parameters.features),
// in API order.
func constraintFeatures(ctx context.Context, c client.Client, name string) ([]string, error) {
	con := &unstructured.Unstructured{}
	con.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
	if err := c.Get(ctx, client.ObjectKey{Name: name}, con); err != nil {
		return nil, err
	}
	entries, _, _ := unstructured.NestedMap(con.Object, "spec", "parameters", "features")
	var out []string
	for _, f := range templates.Features() {
		if _, ok := entries[f.Name]; ok {
			out = append(out, f.Name)
		}
	}
	if len(out) != len(entries) {
		return nil, fmt.Errorf("constraint %s names unknown features: %v", name, entries)
	}
	return out, nil
}

// waitPolicy waits until our objects are the policy template with exactly the given
// constraints (none: no template either), each enforcing exactly the given features (in API
// order).
func waitPolicy(t *testing.T, c client.Client, want map[string][]string) {
	t.Helper()
	var names []string
	for name := range want {
		names = append(names, name)
	}
	var objects []string
	if len(names) > 0 {
		objects = policyObjects(names...)
	}
	eventually(t, waitTimeout, func() error {
		if got := ourObjects(t, c); !slices.Equal(got, objects) {
			return fmt.Errorf("generated objects %v, want %v", got, objects)
		}
		for name, features := range want {
			got, err := constraintFeatures(context.Background(), c, name)
			if err != nil {
				return err
			}
			if !slices.Equal(got, features) {
				return fmt.Errorf("constraint %s enforces %v, want %v", name, got, features)
			}
		}
		return nil
	})
}

func waitObjects(t *testing.T, c client.Client, want []string) {
	t.Helper()
	eventually(t, waitTimeout, func() error {
		if got := ourObjects(t, c); !slices.Equal(got, want) {
			return fmt.Errorf("generated objects %v, want %v", got, want)
		}
		return nil
	})
}

func featureStatusOf(obj *v1alpha1.PodSecurityConstraints, name string) v1alpha1.FeatureStatus {
	for _, f := range obj.Status.Features {
		if f.Name == name {
			return f
		}
	}
	return v1alpha1.FeatureStatus{}
}

// specWith enables the named features with minimal valid parameters.
func specWith(features ...string) v1alpha1.PodSecurityConstraintsSpec {
	spec := v1alpha1.PodSecurityConstraintsSpec{}
	on := v1alpha1.FeatureCommon{Enabled: true}
	con := v1alpha1.ContainerFeatureCommon{FeatureCommon: on}
	for _, f := range features {
		switch f {
		case "privilegedContainers":
			spec.PrivilegedContainers = &v1alpha1.PrivilegedContainersFeature{ContainerFeatureCommon: con}
		case "hostNamespaces":
			spec.HostNamespaces = &v1alpha1.HostNamespacesFeature{FeatureCommon: on}
		case "privilegeEscalation":
			spec.PrivilegeEscalation = &v1alpha1.PrivilegeEscalationFeature{ContainerFeatureCommon: con}
		case "capabilities":
			spec.Capabilities = &v1alpha1.CapabilitiesFeature{ContainerFeatureCommon: con, RequiredDropCapabilities: []v1alpha1.Capability{"ALL"}}
		case "sysctls":
			spec.Sysctls = &v1alpha1.SysctlsFeature{FeatureCommon: on, ForbiddenSysctls: []v1alpha1.SysctlPattern{"kernel.*"}}
		default:
			panic("specWith does not know feature " + f)
		}
	}
	return spec
}
