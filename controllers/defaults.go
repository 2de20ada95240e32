package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// DefaultsActive reasons.
const (
	ReasonDefaultsActive        = "Active"
	ReasonDefaultsOff           = "Off"
	ReasonMutationUnavailable   = "MutationUnavailable"
	ReasonMutatorError          = "MutatorError"
	ReasonMutatorsNotReported   = "MutatorsNotReported"
	ReasonDefaultsNotEvaluated  = "NotEvaluated"
	ReasonDefaultsWithheld      = "DefaultsWithheld"
	mutationCRDsForMessage      = templates.AssignCRDName + ", " + templates.ModifySetCRDName
	featuresStillEnforcedNotice = " The features are still enforced: pods that leave a required field unset are denied instead of completed."
)

// defaultsFacts is what one reconcile found out about a feature's mutators (setDefaults).
type defaultsFacts struct {
	// Wanted counts the mutators rendered for the feature; 0 when defaults are off for it or
	// it has nothing to default.
	Wanted int
	// CRDMissing: Gatekeeper does not serve a mutator kind (installed without mutation); those
	// mutators were not applied.
	CRDMissing bool
	// ApplyErrors of the mutators that could not be applied.
	ApplyErrors []string
	// Observed is what Gatekeeper reports about each applied mutator.
	Observed []namedObservation
	// Withheld says why spec.setDefaults renders no mutators for the feature (it exempts
	// images); empty otherwise.
	Withheld string
}

type namedObservation struct {
	Name     string
	Observed gatekeeperObjectObservation
}

// applyMutators applies each enabled feature's mutators once the CRD of their kind exists, and
// observes what Gatekeeper reports about them. Their failures are reported as the feature's
// defaults state and never hold back its enforcement.
func (r *Reconciler) applyMutators(ctx context.Context, owner *v1alpha1.PodSecurityConstraints, inv templates.Inventory,
	crds map[string]bool, features []featureFacts, ch *changes) {
	for i := range features {
		f := &features[i]
		for _, it := range inv {
			if it.Role != templates.RoleMutator || it.Feature != f.Feature.Name {
				continue
			}
			f.Defaults.Wanted++
			mk, _ := templates.ManagedKindOf(it.Object.GroupVersionKind())
			if !crds[mk.CRD] {
				f.Defaults.CRDMissing = true
				continue
			}
			live, applied, err := r.applyObject(ctx, owner, it.Object)
			if err != nil {
				f.Defaults.ApplyErrors = append(f.Defaults.ApplyErrors, err.Error())
				continue
			}
			f.Defaults.Observed = append(f.Defaults.Observed, namedObservation{Name: it.Object.GetName(), Observed: observeGatekeeperObject(live)})
			if applied && !slices.Contains(ch.Applied, f.Feature.Name) {
				ch.Applied = append(ch.Applied, f.Feature.Name)
			}
		}
	}
}

// defaultsState derives a feature's defaults state and the reason behind it; empty when the
// feature has no defaults to apply.
func defaultsState(d defaultsFacts) (v1alpha1.DefaultsState, string) {
	if d.Wanted == 0 {
		if d.Withheld != "" {
			return v1alpha1.DefaultsWithheld, d.Withheld
		}
		return "", ""
	}
	switch {
	case d.CRDMissing:
		return v1alpha1.DefaultsUnavailable, "Gatekeeper does not serve mutators (" + mutationCRDsForMessage + ")"
	case len(d.ApplyErrors) > 0:
		return v1alpha1.DefaultsError, strings.Join(d.ApplyErrors, "; ")
	}
	var errs, unreported []string
	for _, o := range d.Observed {
		current := len(o.Observed.ByPod) > 0
		for _, p := range o.Observed.ByPod {
			for _, e := range p.Errors {
				errs = append(errs, o.Name+": "+e)
			}
			if p.ObservedGeneration != o.Observed.Generation {
				current = false
			}
		}
		if !current {
			unreported = append(unreported, o.Name)
		}
	}
	switch {
	case len(errs) > 0:
		return v1alpha1.DefaultsError, strings.Join(uniqueSorted(errs), "; ")
	case len(unreported) > 0:
		return v1alpha1.DefaultsPending, "waiting for Gatekeeper to load " + strings.Join(unreported, ", ")
	}
	return v1alpha1.DefaultsActive, ""
}

// defaultsCondition is DefaultsActive: whether pods that leave fields unset are completed by
// Gatekeeper's mutation. It never changes Ready: the features are enforced either way.
func defaultsCondition(facts reconcileFacts) metav1.Condition {
	cond := func(status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionDefaultsActive, Status: status, Reason: reason, Message: msg}
	}
	if !facts.MasterEnabled {
		return cond(metav1.ConditionFalse, ReasonMasterSwitchOff, "The master switch spec.enabled is off: nothing is defaulted.")
	}
	var wanted, active []string
	byState := map[v1alpha1.DefaultsState][]string{}
	for _, f := range facts.Features {
		if !f.Enabled || (f.Defaults.Wanted == 0 && f.Defaults.Withheld == "") {
			continue
		}
		wanted = append(wanted, f.Feature.Name)
		state, why := defaultsState(f.Defaults)
		if state == v1alpha1.DefaultsActive {
			active = append(active, f.Feature.Name)
			continue
		}
		byState[state] = append(byState[state], fmt.Sprintf("%s (%s)", f.Feature.Name, why))
	}
	switch {
	case len(wanted) == 0:
		return cond(metav1.ConditionFalse, ReasonDefaultsOff,
			"No enabled feature has setDefaults on (or anything to default): pods that leave a required field unset are denied.")
	case facts.Failed != nil:
		return cond(metav1.ConditionUnknown, ReasonDefaultsNotEvaluated, "Defaults were not evaluated: "+facts.Failed.Message)
	case len(byState[v1alpha1.DefaultsUnavailable]) > 0:
		return cond(metav1.ConditionFalse, ReasonMutationUnavailable, "Gatekeeper does not serve mutators (the CRDs "+mutationCRDsForMessage+
			" do not exist: Gatekeeper is installed without mutation), so setDefaults has no effect for "+strings.Join(wanted, ", ")+"."+featuresStillEnforcedNotice)
	case len(byState[v1alpha1.DefaultsError]) > 0:
		return cond(metav1.ConditionFalse, ReasonMutatorError, "Mutators failed for "+strings.Join(byState[v1alpha1.DefaultsError], "; ")+"."+featuresStillEnforcedNotice)
	case len(byState[v1alpha1.DefaultsPending]) > 0:
		return cond(metav1.ConditionFalse, ReasonMutatorsNotReported, "Waiting for Gatekeeper to load the mutators of "+strings.Join(byState[v1alpha1.DefaultsPending], "; ")+
			". If this persists, no Gatekeeper pod runs --operation=mutation-status, or mutation is not enabled (--operation=mutation-webhook).")
	case len(byState[v1alpha1.DefaultsWithheld]) > 0:
		msg := "spec.setDefaults is on, but defaults are withheld for " + strings.Join(byState[v1alpha1.DefaultsWithheld], "; ") +
			". Their fields are not filled in: pods that leave them unset are judged as they are."
		if len(active) > 0 {
			msg += fmt.Sprintf(" Defaults are active for %d features: %s.", len(active), strings.Join(active, ", "))
		}
		return cond(metav1.ConditionFalse, ReasonDefaultsWithheld, msg)
	}
	return cond(metav1.ConditionTrue, ReasonDefaultsActive, fmt.Sprintf("Pods that leave fields unset are completed by Gatekeeper's mutation for %d features: %s.",
		len(active), strings.Join(active, ", ")))
}
