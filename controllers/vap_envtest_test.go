package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	templatesv1 "github.com/open-policy-agent/frameworks/constraint/pkg/apis/templates/v1"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/drivers/k8scel/transform"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// TestVAPNeverLocksOutSystemNamespaces puts the ValidatingAdmissionPolicy and binding that
// Gatekeeper v3.23 generates from our rendered template and constraint (its own transform code,
// with no namespace exemptions of Gatekeeper's: --exempt-namespace and Gatekeeper's Config do
// not reach a policy by themselves) into a real API server, and checks which pods it denies:
// our message in an ordinary namespace, nothing in kube-system, the operator's, Gatekeeper's
// and the probe's namespaces, or the spec's excluded namespaces (globs included). Run against
// kube-apiserver v1.30 (make test-envtest-oldest), it also proves that the API server of the
// oldest supported Kubernetes compiles and runs our CEL.
func TestVAPNeverLocksOutSystemNamespaces(t *testing.T) {
	te := startEnv(t, false)
	ctx := context.Background()
	c := te.client

	spec := v1alpha1.PodSecurityConstraintsSpec{
		ExcludedNamespaces:        []v1alpha1.NamespacePattern{"team-*"},
		ValidatingAdmissionPolicy: &v1alpha1.ValidatingAdmissionPolicy{Enabled: true},
		HostNamespaces:            &v1alpha1.HostNamespacesFeature{FeatureCommon: v1alpha1.FeatureCommon{Enabled: true, ExcludedNamespaces: []v1alpha1.NamespacePattern{"legacy"}}},
	}
	opts := templates.DefaultOptions()
	inv, err := templates.Render(&spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := inv.Find(templates.RoleTemplate, "hostNamespaces")
	// hostNamespaces has namespaces of its own: its own constraint, psc-host-namespaces.
	con, _ := inv.Find(templates.RoleConstraint, "hostNamespaces")
	if con.GetName() != "psc-host-namespaces" {
		t.Fatalf("hostNamespaces is enforced by %s, want its own constraint psc-host-namespaces", con.GetName())
	}

	// What Gatekeeper's generate operation would create: the constraint CRD, then the policy
	// from the template and the binding from the constraint.
	fg := &fakeGatekeeper{c: c}
	eventually(t, waitTimeout, func() error {
		ok, err := fg.ensureConstraintCRD(ctx, templates.PolicyKind)
		if err == nil && !ok {
			err = fmt.Errorf("constraint CRD not established yet")
		}
		return err
	})
	eventually(t, waitTimeout, func() error { return client.IgnoreAlreadyExists(c.Create(ctx, con.DeepCopy())) })
	policy, binding := generatedVAP(t, tmpl, con)
	if err := c.Create(ctx, policy); err != nil {
		t.Fatalf("creating the generated policy: %v", err)
	}
	if err := c.Create(ctx, binding); err != nil {
		t.Fatalf("creating the generated binding: %v", err)
	}

	namespaces := []string{"default", "kube-system", opts.OperatorNamespace, opts.GatekeeperNamespace, opts.ProbeNamespace, "team-a", "legacy"}
	for _, ns := range namespaces {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	hostPID := func(ns string) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "vap-host-pid", Namespace: ns},
			Spec: corev1.PodSpec{HostPID: true, AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
		}
		return c.Create(ctx, pod, client.DryRunAll)
	}

	// The API server loads a new policy asynchronously: wait until it denies.
	const want = "psc/hostNamespaces: pod spec.hostPID is true"
	eventually(t, waitTimeout, func() error {
		err := hostPID("default")
		if err == nil {
			return fmt.Errorf("a hostPID pod in default was admitted")
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), policy.Name) {
			return fmt.Errorf("denied, but not by %s with our message: %v", policy.Name, err)
		}
		return nil
	})
	for _, ns := range namespaces[1:] {
		if err := hostPID(ns); err != nil {
			t.Errorf("namespace %s is locked out by the API server's policy: %v", ns, err)
		}
	}
	// A compliant pod is admitted where the policy applies.
	compliant := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vap-compliant", Namespace: "default"},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if err := c.Create(ctx, compliant, client.DryRunAll); err != nil {
		t.Errorf("a compliant pod was denied: %v", err)
	}
	// The API server's own view of the policy: type checking against the constraint's kind
	// found nothing to warn about (it runs asynchronously; give it a moment).
	time.Sleep(2 * time.Second)
	live := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(policy), live); err != nil {
		t.Fatal(err)
	}
	if w := typeWarnings(live); len(w) > 0 {
		t.Errorf("type-checking warnings: %v", w)
	}
}

// generatedVAP converts the rendered template and constraint with Gatekeeper's own transform
// into the admissionregistration.k8s.io/v1 objects its generate operation writes.
func generatedVAP(t *testing.T, tmpl, con *unstructured.Unstructured) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	t.Helper()
	data, err := tmpl.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	v1 := &templatesv1.ConstraintTemplate{}
	if err := json.Unmarshal(data, v1); err != nil {
		t.Fatal(err)
	}
	ct, err := v1.ToVersionless()
	if err != nil {
		t.Fatal(err)
	}
	beta, err := transform.TemplateToPolicyDefinitionWithWebhookConfig(ct, nil, nil, nil)
	if err != nil {
		t.Fatalf("Gatekeeper's transform of the template: %v", err)
	}
	actions := []string{templates.ConstraintAction(con)}
	betaBinding, err := transform.ConstraintToBinding(con, actions)
	if err != nil {
		t.Fatalf("Gatekeeper's transform of the constraint: %v", err)
	}
	if betaBinding.Name != templates.BindingName(con.GetName()) || beta.Name != templates.PolicyName() {
		t.Fatalf("Gatekeeper names them %s and %s; templates says %s and %s", beta.Name, betaBinding.Name,
			templates.PolicyName(), templates.BindingName(con.GetName()))
	}
	// v1beta1 and v1 have the same fields; Gatekeeper converts the same way on 1.30+.
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	for _, p := range []struct{ in, out interface{} }{{beta, policy}, {betaBinding, binding}} {
		b, err := json.Marshal(p.in)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, p.out); err != nil {
			t.Fatal(err)
		}
	}
	return policy, binding
}
