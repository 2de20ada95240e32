package controllers

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
)

// specVerdict is the outcome of validating one generation of the CR. The spec cannot change
// within a generation, so the verdict holds until the generation moves.
type specVerdict struct {
	mu         sync.Mutex
	uid        types.UID
	generation int64
	checked    bool
	errs       field.ErrorList
}

// validateSpec checks the CR with the CRD's own rules, once per generation. The API server
// has already validated every write; this catches objects stored under an older CRD.
//
// Without a Validator (main.go) it builds one for the check and lets it go afterwards: the
// validator holds every CEL rule of the CRD compiled, about 3.5 MiB of heap that the operator
// would otherwise keep for a check it runs only when the spec changes. Building it takes
// 0.05–0.15 s, paid once per spec change.
func (r *Reconciler) validateSpec(ctx context.Context, obj *v1alpha1.PodSecurityConstraints) field.ErrorList {
	r.verdict.mu.Lock()
	defer r.verdict.mu.Unlock()
	if r.verdict.checked && r.verdict.uid == obj.UID && r.verdict.generation == obj.Generation {
		return r.verdict.errs
	}
	v := r.Validator
	if v == nil {
		built, err := validation.New()
		if err != nil {
			// Not remembered: the next reconcile tries again.
			return field.ErrorList{field.InternalError(nil, fmt.Errorf("loading the CRD schema: %w", err))}
		}
		v = built
	}
	errs := v.Validate(ctx, obj)
	r.verdict.uid, r.verdict.generation, r.verdict.checked, r.verdict.errs = obj.UID, obj.Generation, true, errs
	return errs
}
