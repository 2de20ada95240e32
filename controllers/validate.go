package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// specVerdict is the outcome of validating one generation of the CR. The spec cannot change
// within a generation, so the verdict holds until the generation moves.
type specVerdict struct {
	mu         sync.Mutex
	uid        types.UID
	generation int64
	checked    bool
	invalid    string
}

// validateSpec checks the CR with the installed CRD's rules, once per generation, and returns
// the API server's message for a spec that breaks them ("" for a valid one). The API server
// validated every write already; this catches objects stored under an older CRD, whose
// rules were looser, and which the API server never validates again.
//
// It asks the API server to create a copy of the object in dry-run mode: creation validates
// the whole object against the CRD's schema and CEL rules before the storage finds that the
// name is taken (AlreadyExists: valid), and an update would not do, since CRD validation
// ratcheting lets unchanged invalid fields through. Nothing is stored. The operator used to
// run the same rules in process, which linked the API server's CEL stack (cel-go, its
// parser, k8s.io/apiserver's libraries) into the manager: about 10 MiB of resident memory
// for a check that runs once per spec change (README, "The operator's own cost").
//
// An error means the check could not be made (transient API trouble); it is not remembered.
func (r *Reconciler) validateSpec(ctx context.Context, obj *v1alpha1.PodSecurityConstraints) (string, error) {
	r.verdict.mu.Lock()
	defer r.verdict.mu.Unlock()
	if r.verdict.checked && r.verdict.uid == obj.UID && r.verdict.generation == obj.Generation {
		return r.verdict.invalid, nil
	}
	invalid, err := r.dryRunCreate(ctx, obj)
	if err != nil {
		return "", err
	}
	r.verdict.uid, r.verdict.generation, r.verdict.checked, r.verdict.invalid = obj.UID, obj.Generation, true, invalid
	return invalid, nil
}

// dryRunCreate creates a copy of obj's name and spec in dry-run mode and returns the API
// server's validation message, "" when the spec passed.
func (r *Reconciler) dryRunCreate(ctx context.Context, obj *v1alpha1.PodSecurityConstraints) (string, error) {
	cp := &v1alpha1.PodSecurityConstraints{
		ObjectMeta: metav1.ObjectMeta{Name: obj.Name},
		Spec:       *obj.Spec.DeepCopy(),
	}
	err := r.Client.Create(ctx, cp, client.DryRunAll, client.FieldOwner(FieldManager))
	var status apierrors.APIStatus
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		return "", nil
	case apierrors.IsInvalid(err) && errors.As(err, &status):
		return status.Status().Message, nil
	default:
		return "", fmt.Errorf("asking the API server to validate the spec (a dry-run create): %w", err)
	}
}
