package controllers

import (
	"context"
	"errors"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/yaml"
)

func TestTrimCRDForCache(t *testing.T) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal([]byte(`
metadata:
  name: pscsysctls.constraints.gatekeeper.sh
  labels: {gatekeeper.sh/constraint: "yes"}
  annotations: {kubectl.kubernetes.io/last-applied-configuration: "{...the whole CRD...}"}
  managedFields: [{manager: gatekeeper, operation: Update}]
spec:
  group: constraints.gatekeeper.sh
  names: {kind: PSCSysctls, plural: pscsysctls}
  scope: Cluster
  versions:
  - name: v1beta1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
status:
  conditions: [{type: Established, status: "True"}, {type: NamesAccepted, status: "True"}]
`), crd); err != nil {
		t.Fatal(err)
	}
	out, err := trimCRDForCache(crd)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*apiextensionsv1.CustomResourceDefinition)
	if got.Spec.Versions != nil || got.GetAnnotations() != nil || got.GetManagedFields() != nil {
		t.Errorf("schemas, annotations or managedFields left: %+v", got)
	}
	if got.Name != "pscsysctls.constraints.gatekeeper.sh" || got.Spec.Names.Kind != "PSCSysctls" || got.Spec.Group != "constraints.gatekeeper.sh" ||
		got.Labels["gatekeeper.sh/constraint"] != "yes" {
		t.Errorf("name, names, group or labels lost: %+v", got)
	}
	if !established(got) {
		t.Error("the Established condition was lost")
	}
}

func TestEstablished(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conds []apiextensionsv1.CustomResourceDefinitionCondition
		want  bool
	}{
		{name: "no conditions yet", want: false},
		{name: "names accepted only", conds: []apiextensionsv1.CustomResourceDefinitionCondition{{Type: apiextensionsv1.NamesAccepted, Status: apiextensionsv1.ConditionTrue}}},
		{name: "established false", conds: []apiextensionsv1.CustomResourceDefinitionCondition{{Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionFalse}}},
		{name: "established", conds: []apiextensionsv1.CustomResourceDefinitionCondition{{Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionTrue}}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crd := &apiextensionsv1.CustomResourceDefinition{Status: apiextensionsv1.CustomResourceDefinitionStatus{Conditions: tc.conds}}
			if got := established(crd); got != tc.want {
				t.Errorf("established = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNotCached(t *testing.T) {
	gvk := schema.GroupVersionKind{Group: constraintsGroup, Version: "v1beta1", Kind: "PSCSysctls"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{name: "kind not watched", err: &cache.ErrResourceNotCached{GVK: gvk}, want: true},
		{name: "watch not synced yet (the cache's timeout)", err: apierrors.NewTimeoutError("failed waiting for *unstructured.Unstructured Informer to sync", 0), want: true},
		{name: "not found is an answer", err: apierrors.NewNotFound(gvk.GroupVersion().WithResource("pscsysctls").GroupResource(), "x")},
		{name: "other errors are errors", err: errors.New("boom")},
		{name: "no error", err: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := notCached(tc.err); got != tc.want {
				t.Errorf("notCached(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	if err := noWait(context.Background()).Err(); err == nil {
		t.Error("noWait's context is not done")
	}
}
