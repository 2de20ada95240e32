package controllers

import (
	"context"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// terminatingCRDReader reads from the API server, except that the CRD named terminating
// carries a deletion timestamp: the API server is deleting it. The API server cannot be made
// to hold such a CRD at will: it deletes the CRD's objects and lets it go at once, unless an
// object is created in the moment after it looked (the master switch off and on again while
// Gatekeeper removes the template's CRD), and then the CRD stays terminating for a minute.
type terminatingCRDReader struct {
	client.Reader
	terminating string
}

func (r terminatingCRDReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := r.Reader.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	if crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition); ok && crd.Name == r.terminating {
		now := metav1.Now()
		crd.DeletionTimestamp = &now
	}
	return nil
}

// snapshotReader lists the templates as they were when the snapshot was taken (an informer
// cache that has not seen the deletes and creates since) and reads everything else from the
// API server.
type snapshotReader struct {
	client.Reader
	templates *unstructured.UnstructuredList
}

func (r snapshotReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if u, ok := list.(*unstructured.UnstructuredList); ok && u.GetKind() == "ConstraintTemplateList" {
		r.templates.DeepCopyInto(u)
		return nil
	}
	return r.Reader.List(ctx, list, opts...)
}

// TestPrune covers what pruneStale deletes besides objects no longer wanted, and what it must
// never delete.
func TestPrune(t *testing.T) {
	te := startEnv(t, true)
	ctx := context.Background()
	owner := &v1alpha1.PodSecurityConstraints{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ClusterName, UID: "0b3c0d6e-0000-4000-8000-000000000002"}}
	spec := specWith("privilegedContainers")
	rendered, err := templates.Render(&spec, templates.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	tmpl := rendered.Items(templates.RoleTemplate)[0].Object
	con := rendered.Items(templates.RoleConstraint)[0].Object
	exists := func(t *testing.T, obj *unstructured.Unstructured) (types.UID, bool) {
		t.Helper()
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(obj.GroupVersionKind())
		err := te.client.Get(ctx, client.ObjectKeyFromObject(obj), live)
		if apierrors.IsNotFound(err) {
			return "", false
		}
		if err != nil {
			t.Fatal(err)
		}
		return live.GetUID(), true
	}

	// A constraint whose CRD the API server is deleting is deleted even though it is wanted:
	// it is going anyway, and while it is left, the CRD stays (reproduced under load by
	// TestStressMasterSwitch: the policy was not enforced for a minute, and MasterSwitch
	// timed out).
	t.Run("ConstraintsOfATerminatingCRD", func(t *testing.T) {
		startFakeGatekeeper(t, te.client) // creates the constraint CRD of the template
		r := &Reconciler{Client: te.client, APIReader: te.client}
		if _, _, err := r.applyObject(ctx, owner, tmpl); err != nil {
			t.Fatal(err)
		}
		eventually(t, waitTimeout, func() error {
			_, _, err := r.applyObject(ctx, owner, con)
			return err
		})
		if _, err := r.pruneStale(ctx, rendered, false); err != nil {
			t.Fatal(err)
		}
		if _, ok := exists(t, con); !ok {
			t.Fatal("the wanted constraint was deleted while its CRD was not being deleted")
		}

		r.APIReader = terminatingCRDReader{Reader: te.client, terminating: constraintCRDName(templates.PolicyKind)}
		pruned, err := r.pruneStale(ctx, rendered, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := exists(t, con); ok {
			t.Error("the constraint was kept while its CRD is being deleted; the CRD cannot go until it does")
		}
		if _, ok := exists(t, tmpl); !ok {
			t.Error("the wanted template was deleted")
		}
		if len(pruned) != 0 {
			t.Errorf("pruned %v: a constraint deleted with its CRD is no longer-wanted object", pruned)
		}

		tmplObj := tmpl.DeepCopy()
		if err := te.client.Delete(ctx, tmplObj); err != nil {
			t.Fatal(err)
		}
		eventually(t, waitTimeout, func() error { return constraintCRDsSettled(ctx, te.client) })
	})

	// A delete goes to the object as it was listed: a list from a cache that lags behind
	// never removes an object of the same name created since.
	t.Run("OnlyTheObjectListed", func(t *testing.T) {
		r := &Reconciler{Client: te.client, APIReader: te.client}
		if _, _, err := r.applyObject(ctx, owner, tmpl); err != nil {
			t.Fatal(err)
		}
		snapshot := &unstructured.UnstructuredList{}
		snapshot.SetGroupVersionKind(templates.TemplateGVK.GroupVersion().WithKind("ConstraintTemplateList"))
		if err := te.client.List(ctx, snapshot); err != nil {
			t.Fatal(err)
		}
		oldUID, _ := exists(t, tmpl)
		if err := te.client.Delete(ctx, tmpl.DeepCopy()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.applyObject(ctx, owner, tmpl); err != nil {
			t.Fatal(err)
		}
		newUID, _ := exists(t, tmpl)
		if newUID == oldUID {
			t.Fatalf("the template was not created again (uid %s)", newUID)
		}

		r.APIReader = snapshotReader{Reader: te.client, templates: snapshot}
		pruned, err := r.pruneStale(ctx, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if uid, ok := exists(t, tmpl); !ok || uid != newUID {
			t.Errorf("the template created after the list was deleted (uid now %q, want %s)", uid, newUID)
		}
		if len(pruned) != 0 {
			t.Errorf("pruned %v, want nothing: the listed template was gone already", pruned)
		}

		// Listed as it is, it is deleted.
		r.APIReader = te.client
		pruned, err = r.pruneStale(ctx, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := exists(t, tmpl); ok || len(pruned) != 1 {
			t.Errorf("pruned %v; the template exists: %v", pruned, ok)
		}
	})
}
