package controllers

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// staleReader plays an informer cache that has not yet seen any of the operator's writes.
type staleReader struct{}

func (staleReader) Get(_ context.Context, key client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
}

func (staleReader) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

// TestApplyThroughStaleCache: an apply that the lagging cache made look needed but that
// changed nothing on the server is not reported as a change; a real change still is.
func TestApplyThroughStaleCache(t *testing.T) {
	te := startEnv(t, true)
	ctx := context.Background()
	r := &Reconciler{Client: te.client, APIReader: staleReader{}}
	owner := &v1alpha1.PodSecurityConstraints{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ClusterName, UID: "0b3c0d6e-0000-4000-8000-000000000001"}}

	steps := []struct {
		name  string
		drift func(t *testing.T)
		want  bool
	}{
		{name: "first apply creates the object", want: true},
		{name: "same apply again changes nothing", want: false},
		{name: "after someone else's change the apply restores it", want: true, drift: func(t *testing.T) {
			live := renderProbeTemplate()
			if err := te.client.Get(ctx, client.ObjectKeyFromObject(live), live); err != nil {
				t.Fatal(err)
			}
			if err := unstructured.SetNestedField(live.Object, "Changed", "spec", "crd", "spec", "names", "kind"); err != nil {
				t.Fatal(err)
			}
			if err := te.client.Update(ctx, live); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "and once restored, again nothing", want: false},
	}
	for _, st := range steps {
		if st.drift != nil {
			st.drift(t)
		}
		_, changed, err := r.applyObject(ctx, owner, renderProbeTemplate())
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if changed != st.want {
			t.Errorf("%s: changed = %v, want %v", st.name, changed, st.want)
		}
	}
}
