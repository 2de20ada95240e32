package controllers

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// testSpecIsValidatedByTheAPIServer: validateSpec checks a spec with the installed CRD's
// rules through a dry-run create, whether or not the CR exists, once per generation; a check
// that could not be made is an error and is not remembered. The objects checked here are in
// memory only: the API server would refuse to store them, as it refuses an object stored
// under an older CRD whose rules were looser.
func testSpecIsValidatedByTheAPIServer(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	ctx := context.Background()
	dotDot := func(prefix string) v1alpha1.PodSecurityConstraintsSpec {
		return v1alpha1.PodSecurityConstraintsSpec{HostFilesystem: &v1alpha1.HostFilesystemFeature{
			AllowedHostPaths: []v1alpha1.AllowedHostPath{{PathPrefix: prefix}}}}
	}
	obj := &v1alpha1.PodSecurityConstraints{Spec: dotDot("/var/log/../../etc")}
	obj.Name, obj.UID, obj.Generation = v1alpha1.ClusterName, "uid-1", 1

	// A check that cannot be made: an error, and nothing remembered.
	base, cerr := client.NewWithWatch(te.cfg, client.Options{Scheme: newScheme()})
	if cerr != nil {
		t.Fatal(cerr)
	}
	failing := interceptor.NewClient(base, interceptor.Funcs{
		Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
			return apierrors.NewServiceUnavailable("injected by the test")
		},
	})
	r := &Reconciler{Client: failing}
	invalid, err := r.validateSpec(ctx, obj)
	if err == nil || invalid != "" {
		t.Fatalf("API server unavailable: got %q, %v; want an error", invalid, err)
	}

	r.Client = te.client
	invalid, err = r.validateSpec(ctx, obj)
	if err != nil || !strings.Contains(invalid, "'..' path segments") || !strings.Contains(invalid, "spec.hostFilesystem.allowedHostPaths[0].pathPrefix") {
		t.Fatalf("generation 1 with a '..' prefix: got %q, %v; want the '..' rule's message with its field", invalid, err)
	}

	// Same generation: the remembered verdict, not a new check (the spec was changed here in
	// memory only, which the API server never allows without a new generation).
	obj.Spec = dotDot("/var/log")
	if invalid, _ := r.validateSpec(ctx, obj); invalid == "" {
		t.Fatal("same generation: the verdict was not remembered")
	}
	obj.Generation = 2
	if invalid, err := r.validateSpec(ctx, obj); invalid != "" || err != nil {
		t.Fatalf("generation 2, valid, no CR stored: got %q, %v", invalid, err)
	}

	// With the CR stored, the name is taken: a valid spec passes (AlreadyExists), an invalid
	// one still gets its validation message, and nothing is written.
	defer deleteCR(t, te.client)
	applyCR(t, te.client, specWith("privilegedContainers"))
	stored := getCR(t, te.client)
	obj.UID, obj.Generation = "uid-2", 1
	if invalid, err := r.validateSpec(ctx, obj); invalid != "" || err != nil {
		t.Fatalf("valid spec, CR stored: got %q, %v", invalid, err)
	}
	obj.Generation = 2
	obj.Spec = dotDot("var/log")
	if invalid, err := r.validateSpec(ctx, obj); invalid == "" || err != nil {
		t.Fatalf("relative prefix, CR stored: got %q, %v; want the validation message", invalid, err)
	}
	if after := getCR(t, te.client); after.Generation != stored.Generation {
		t.Errorf("the dry-run changed the stored CR's spec: generation %d -> %d", stored.Generation, after.Generation)
	}
}
