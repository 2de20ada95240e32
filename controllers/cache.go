package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// CacheOptions keep the informer cache to what the operator reads: the CR, CRDs without their
// schemas, and of Gatekeeper's templates and constraints only those labelled as ours (other
// teams' templates can be many and large). Objects are trimmed as they enter the cache.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultLabelSelector: labels.SelectorFromSet(labels.Set{templates.LabelManagedBy: templates.ManagedByValue}),
		DefaultTransform:     trimForCache,
		// A read of a kind nobody watches fails at once instead of starting an informer and
		// waiting for it to sync, which never happens for a kind whose CRD is going away;
		// gatekeeperReader then asks the API server.
		ReaderFailOnMissingInformer: true,
		ByObject: map[client.Object]cache.ByObject{
			&v1alpha1.PodSecurityConstraints{}:          {Label: labels.Everything()},
			&apiextensionsv1.CustomResourceDefinition{}: {Label: labels.Everything(), Transform: trimCRDForCache},
			// Gatekeeper generates these without our labels (vap.go). No informer starts
			// until spec.validatingAdmissionPolicy is first switched on.
			&admissionregistrationv1.ValidatingAdmissionPolicy{}:        {Label: labels.Everything()},
			&admissionregistrationv1.ValidatingAdmissionPolicyBinding{}: {Label: labels.Everything()},
		},
	}
}

// trimForCache drops what the operator never reads: managedFields everywhere; on Gatekeeper
// objects also annotations (upToDate compares labels, owners and spec). A constraint's audit
// violations are kept whole: its features share them, and each feature's count and samples
// are picked out by message (featureViolations); Gatekeeper lists at most
// --constraint-violations-limit of them (20 by default).
func trimForCache(in any) (any, error) {
	if obj, err := meta.Accessor(in); err == nil && obj.GetManagedFields() != nil {
		obj.SetManagedFields(nil)
	}
	if p, ok := in.(*admissionregistrationv1.ValidatingAdmissionPolicy); ok {
		trimVAP(p)
		return p, nil
	}
	u, ok := in.(*unstructured.Unstructured)
	if !ok {
		return in, nil
	}
	u.SetAnnotations(nil)
	return u, nil
}

// trimCRDForCache keeps of a CRD its name, group, names and conditions: whether a Gatekeeper
// kind is served is all the operator asks of CRDs. The schemas (and a client-side apply's
// last-applied annotation, a copy of the whole CRD) would be most of the operator's memory.
func trimCRDForCache(in any) (any, error) {
	crd, ok := in.(*apiextensionsv1.CustomResourceDefinition)
	if !ok {
		return in, nil
	}
	crd.SetManagedFields(nil)
	crd.SetAnnotations(nil)
	crd.Spec.Versions = nil
	crd.Spec.Conversion = nil
	return crd, nil
}

// gatekeeperReader reads Gatekeeper's templates and constraints from the informer cache,
// which the dynamic watches keep current, and answers "no such kind" at once for a kind whose
// CRD is not established yet, from the cached CRDs (trimmed to names and conditions).
type gatekeeperReader struct {
	cached, api client.Reader
}

// NewGatekeeperReader returns the reader for Reconciler.APIReader: cached Gatekeeper objects
// and CRDs, the API server for kinds not watched yet. Pass the manager's cache itself
// (mgr.GetCache()), not its client: the client reads unstructured objects from the API server
// unless told otherwise.
func NewGatekeeperReader(cached, api client.Reader) client.Reader {
	return gatekeeperReader{cached: cached, api: api}
}

func (r gatekeeperReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*apiextensionsv1.CustomResourceDefinition); ok {
		return r.cached.Get(ctx, key, obj, opts...)
	}
	if err := r.served(ctx, obj.GetObjectKind().GroupVersionKind()); err != nil {
		return err
	}
	err := r.cached.Get(noWait(ctx), key, obj, opts...)
	if notCached(err) {
		return r.api.Get(ctx, key, obj, opts...)
	}
	return err
}

func (r gatekeeperReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*apiextensionsv1.CustomResourceDefinitionList); ok {
		return r.cached.List(ctx, list, opts...)
	}
	gvk := list.GetObjectKind().GroupVersionKind()
	gvk.Kind = strings.TrimSuffix(gvk.Kind, "List")
	if err := r.served(ctx, gvk); err != nil {
		return err
	}
	err := r.cached.List(noWait(ctx), list, opts...)
	if notCached(err) {
		return r.api.List(ctx, list, opts...)
	}
	return err
}

// noWait returns a context that is already done. A cache read with it answers at once: from
// a synced informer as usual, and with a timeout error from one that has not synced yet
// instead of waiting for it. A watch started for a kind Gatekeeper has just created lists its
// objects in the background; waiting for that, read after read, took seconds per reconcile on
// a loaded machine, while one read from the API server takes milliseconds.
func noWait(ctx context.Context) context.Context {
	done, cancel := context.WithCancel(ctx)
	cancel()
	return done
}

// notCached reports a read the cache cannot answer: a kind the dynamic watches do not watch
// (yet) — its CRD is new, or it is an old kind left by a renamed template — or whose watch
// has not listed its objects yet.
func notCached(err error) bool {
	var nc *cache.ErrResourceNotCached
	return errors.As(err, &nc) || apierrors.IsTimeout(err)
}

// served answers "no such kind" for a Gatekeeper kind whose CRD does not exist or is not
// established yet, from the cached CRDs. Asking the API server instead would refetch the API
// group's discovery document on every such read: pruning looks for every constraint kind,
// also those of features never enabled, and while Gatekeeper creates the CRDs of a new spec
// one after the other, many kinds exist without being served.
func (r gatekeeperReader) served(ctx context.Context, gvk schema.GroupVersionKind) error {
	var name string
	switch {
	case gvk == templates.TemplateGVK:
		name = templateCRDName
	case gvk.Group == constraintsGroup:
		name = constraintCRDName(gvk.Kind)
	default:
		return nil
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := r.cached.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
		if apierrors.IsNotFound(err) {
			return &meta.NoKindMatchError{GroupKind: gvk.GroupKind(), SearchedVersions: []string{gvk.Version}}
		}
		return fmt.Errorf("looking up the CRD %s: %w", name, err)
	}
	if !established(crd) {
		return &meta.NoKindMatchError{GroupKind: gvk.GroupKind(), SearchedVersions: []string{gvk.Version}}
	}
	return nil
}

// established reports a CRD whose kind the API server serves.
func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}
