package controllers

import (
	"context"
	"strings"
	"testing"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// TestValidateSpecOncePerGeneration: the verdict holds for the generation it was reached for
// (the spec cannot change within one), and a new generation or object is checked again, with
// a validator built for the check (Validator nil, as main.go runs it).
func TestValidateSpecOncePerGeneration(t *testing.T) {
	ctx := context.Background()
	r := &Reconciler{}
	obj := &v1alpha1.PodSecurityConstraints{}
	obj.Name, obj.UID, obj.Generation = v1alpha1.ClusterName, "uid-1", 1
	obj.Spec.HostFilesystem = &v1alpha1.HostFilesystemFeature{AllowedHostPaths: []v1alpha1.AllowedHostPath{{PathPrefix: "/var/log/../../etc"}}}

	errs := r.validateSpec(ctx, obj)
	if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), "'..' path segments") {
		t.Fatalf("generation 1 with a '..' prefix: got %v, want the '..' rule's error", errs)
	}

	// Same generation: the remembered verdict, not a new check (the spec was changed here in
	// memory only, which the API server never allows without a new generation).
	obj.Spec.HostFilesystem.AllowedHostPaths[0].PathPrefix = "/var/log"
	if errs := r.validateSpec(ctx, obj); len(errs) == 0 {
		t.Fatal("same generation: the verdict was not remembered")
	}

	obj.Generation = 2
	if errs := r.validateSpec(ctx, obj); len(errs) != 0 {
		t.Fatalf("generation 2, valid: %v", errs)
	}

	// Another object (deleted and created again) starts at generation 2 too: checked anew.
	obj.UID = "uid-2"
	obj.Spec.HostFilesystem.AllowedHostPaths[0].PathPrefix = "var/log"
	if errs := r.validateSpec(ctx, obj); len(errs) == 0 {
		t.Fatal("a new object with the same generation kept the old object's verdict")
	}
}
