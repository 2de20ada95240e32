package controllers

import (
	"context"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// CacheOptions keep the informer cache to what the operator reads: the CR, the metadata of
// CRDs, and of Gatekeeper's templates and constraints only those labelled as ours (other
// teams' templates can be many and large). Objects are trimmed as they enter the cache.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultLabelSelector: labels.SelectorFromSet(labels.Set{templates.LabelManagedBy: templates.ManagedByValue}),
		DefaultTransform:     trimForCache,
		ByObject: map[client.Object]cache.ByObject{
			&v1alpha1.PodSecurityConstraints{}:          {Label: labels.Everything()},
			&apiextensionsv1.CustomResourceDefinition{}: {Label: labels.Everything()},
		},
	}
}

// trimForCache drops what the operator never reads: managedFields everywhere; on Gatekeeper
// objects also annotations (upToDate compares labels, owners and spec) and the audit
// violations beyond the sample the CR's status shows.
func trimForCache(in any) (any, error) {
	if obj, err := meta.Accessor(in); err == nil && obj.GetManagedFields() != nil {
		obj.SetManagedFields(nil)
	}
	u, ok := in.(*unstructured.Unstructured)
	if !ok {
		return in, nil
	}
	u.SetAnnotations(nil)
	if v, found, _ := unstructured.NestedSlice(u.Object, "status", "violations"); found && len(v) > v1alpha1.MaxSampleViolations {
		_ = unstructured.SetNestedSlice(u.Object, v[:v1alpha1.MaxSampleViolations], "status", "violations")
	}
	return u, nil
}

// gatekeeperReader reads Gatekeeper's templates and constraints from the informer cache,
// which the dynamic watches keep current, and CRDs from the API server: the cache holds the
// metadata of CRDs only, and a full CRD informer would hold every CRD's schema in memory.
type gatekeeperReader struct {
	cached, api client.Reader
}

// NewGatekeeperReader returns the reader for Reconciler.APIReader: cached Gatekeeper objects,
// live CRDs.
func NewGatekeeperReader(cached, api client.Reader) client.Reader {
	return gatekeeperReader{cached: cached, api: api}
}

func (r gatekeeperReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*apiextensionsv1.CustomResourceDefinition); ok {
		return r.api.Get(ctx, key, obj, opts...)
	}
	return r.cached.Get(ctx, key, obj, opts...)
}

func (r gatekeeperReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*apiextensionsv1.CustomResourceDefinitionList); ok {
		return r.api.List(ctx, list, opts...)
	}
	return r.cached.List(ctx, list, opts...)
}
