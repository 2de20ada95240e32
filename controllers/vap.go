package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// Enforcement by the API server itself (spec.validatingAdmissionPolicy). The operator writes
// no ValidatingAdmissionPolicy: it sets generateVAP on the policy template and names the
// enforcement point vap.k8s.io in the constraints (templates.Render), and Gatekeeper's generate
// operation writes the policy (templates.PolicyName, owned by the template) and one binding per
// constraint (templates.BindingName, owned by the constraint). The operator only reads them, to
// report whether they exist, next to what Gatekeeper reports: the template's
// status.byPod[].vapGenerationStatus and the constraint's status.byPod[].enforcementPointsStatus.
//
// RBAC cost: get, list and watch on the two kinds, cluster-wide (RBAC cannot restrict list and
// watch by name). Nothing is cached or watched until the field is switched on.
//
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=get;list;watch

// APIServerEnforced reasons, and Ready's reason while only the API server enforces.
const (
	ReasonAPIServerEnforced         = "Enforced"
	ReasonAPIServerDisabled         = "Disabled"
	ReasonAPIServerPending          = "Pending"
	ReasonAPIServerGenerationFailed = "GenerationFailed"
	ReasonAPIServerNothingBound     = "NothingBound"
	ReasonAPIServerNotEvaluated     = "NotEvaluated"
	// ReasonEnforcedByAPIServerOnly: Gatekeeper's webhook is not judging pods (the admission
	// probe's verdict), and the API server still enforces the features through their policies.
	ReasonEnforcedByAPIServerOnly = "EnforcedByAPIServerOnly"
)

// Gatekeeper's states for generated objects (constrainttemplate and constraint controllers).
const (
	gatekeeperVAPGenerated = "generated"
	gatekeeperVAPError     = "error"
	gatekeeperVAPWaiting   = "waiting"
)

// vapPolicyPrefix starts the name of every ValidatingAdmissionPolicy and binding Gatekeeper
// generates from our templates and constraints (gatekeeper-psc…, gatekeeper-psc…-psc-…).
const vapPolicyPrefix = "gatekeeper-psc"

// vapFacts is what one reconcile found out about a feature's enforcement by the API server.
type vapFacts struct {
	// Wanted: spec.validatingAdmissionPolicy.enabled, so the feature's template generates a
	// policy.
	Wanted bool
	// Binds: the feature's action binds the policy (deny and dryrun; warn stays on the webhook).
	Binds bool
	// Policy and Binding are what exists in the cluster.
	Policy  vapPolicyObservation
	Binding vapBindingObservation
	// ReadError is set when reading them failed.
	ReadError string
}

type vapPolicyObservation struct {
	Exists bool
	// TypeWarnings are the API server's type-checking warnings (status.typeChecking).
	TypeWarnings []string
}

type vapBindingObservation struct {
	Exists            bool
	PolicyName        string
	ValidationActions []string
}

// vapGeneration is one Gatekeeper pod's report of generating a template's policy or a
// constraint's binding.
type vapGeneration struct {
	State              string
	Message            string
	ObservedGeneration int64
}

// apiServerStatus derives a feature's enforcement by the API server; nil when it is not asked
// for or the feature is off.
func apiServerStatus(f featureFacts) *v1alpha1.FeatureAPIServerStatus {
	v := f.VAP
	if !f.Enabled || !v.Wanted {
		return nil
	}
	st := &v1alpha1.FeatureAPIServerStatus{PolicyName: templates.PolicyName()}
	if !v.Binds {
		st.State = v1alpha1.APIServerNotBound
		st.Message = fmt.Sprintf("The feature is in %s: Gatekeeper's webhook gives the warning and no binding is made, so that a request never gets it twice; the API server does not judge it.",
			f.EnforcementAction)
		return st
	}
	st.BindingName = templates.BindingName(f.ConstraintName)
	pending := func(msg string) *v1alpha1.FeatureAPIServerStatus {
		st.State, st.Message = v1alpha1.APIServerPending, msg
		return st
	}
	var errs []string
	for _, g := range f.Template.VAP {
		if g.State == gatekeeperVAPError {
			errs = append(errs, fmt.Sprintf("ValidatingAdmissionPolicy %s: %s", st.PolicyName, g.Message))
		}
	}
	bindingWaiting := ""
	for _, p := range f.Constraint.ByPod {
		switch p.VAP.State {
		case gatekeeperVAPError:
			errs = append(errs, fmt.Sprintf("binding %s: %s", st.BindingName, p.VAP.Message))
		case gatekeeperVAPWaiting:
			bindingWaiting = p.VAP.Message
		}
	}
	errs = uniqueSorted(errs)
	switch {
	case len(errs) > 0:
		st.State = v1alpha1.APIServerError
		st.Message = "Gatekeeper could not generate the API server's policy for the feature: " + strings.Join(errs, "; ")
		return st
	case v.ReadError != "":
		return pending("Reading the ValidatingAdmissionPolicy and its binding failed: " + v.ReadError)
	case !f.Template.Created || !f.Constraint.Exists:
		return pending("Waiting for the template and the constraint.")
	case !generatedAt(f.Template.VAP, f.Template.Generation):
		return pending(fmt.Sprintf("Waiting for Gatekeeper to generate the ValidatingAdmissionPolicy %s (only a Gatekeeper pod running the generate operation does).", st.PolicyName))
	case !v.Policy.Exists:
		return pending(fmt.Sprintf("Gatekeeper reports the ValidatingAdmissionPolicy %s generated, but it does not exist.", st.PolicyName))
	case bindingWaiting != "":
		return pending(fmt.Sprintf("Gatekeeper waits before it generates the binding %s (--default-wait-for-vapb-generation, 30 s by default): %s", st.BindingName, bindingWaiting))
	case !constraintGeneratedAt(f.Constraint):
		return pending(fmt.Sprintf("Waiting for Gatekeeper to generate the binding %s.", st.BindingName))
	case !v.Binding.Exists:
		return pending(fmt.Sprintf("Gatekeeper reports the binding %s generated, but it does not exist.", st.BindingName))
	case v.Binding.PolicyName != st.PolicyName:
		return pending(fmt.Sprintf("The binding %s refers to %q instead of %s.", st.BindingName, v.Binding.PolicyName, st.PolicyName))
	}
	st.State = v1alpha1.APIServerActive
	st.ValidationActions = v.Binding.ValidationActions
	st.Message = fmt.Sprintf("The API server enforces the feature (%s) through the ValidatingAdmissionPolicy %s and the binding %s.",
		strings.Join(v.Binding.ValidationActions, ", "), st.PolicyName, st.BindingName)
	if len(v.Policy.TypeWarnings) > 0 {
		st.Message += " Its type checking warns: " + strings.Join(v.Policy.TypeWarnings, "; ")
	}
	return st
}

func generatedAt(gens []vapGeneration, generation int64) bool {
	for _, g := range gens {
		if g.State == gatekeeperVAPGenerated && g.ObservedGeneration == generation {
			return true
		}
	}
	return false
}

func constraintGeneratedAt(c constraintObservation) bool {
	for _, p := range c.ByPod {
		if p.VAP.State == gatekeeperVAPGenerated && p.VAP.ObservedGeneration == c.Generation {
			return true
		}
	}
	return false
}

// featureStateUnderAPIServer holds a feature Gatekeeper reports enforced at Pending or Error
// while its API-server enforcement, asked for, is not in place.
func featureStateUnderAPIServer(st *v1alpha1.FeatureStatus) {
	a := st.ValidatingAdmissionPolicy
	if a == nil || st.State != v1alpha1.FeatureEnforced {
		return
	}
	switch a.State {
	case v1alpha1.APIServerError:
		st.State, st.Enforced, st.Message = v1alpha1.FeatureError, false, a.Message
	case v1alpha1.APIServerPending:
		st.State, st.Enforced = v1alpha1.FeaturePending, false
		st.Message = "Gatekeeper enforces the constraint; the API server's policy is not in place yet: " + a.Message
	}
}

// apiServerCondition is APIServerEnforced: whether the API server enforces every enabled
// feature that binds a policy. Errors and waiting also show in the features' states (and so
// in Ready); this condition sums up the API-server path alone.
func apiServerCondition(facts reconcileFacts, st v1alpha1.PodSecurityConstraintsStatus) metav1.Condition {
	cond := func(status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionAPIServerEnforced, Status: status, Reason: reason, Message: msg}
	}
	switch {
	case !facts.VAPEnabled:
		return cond(metav1.ConditionFalse, ReasonAPIServerDisabled, "spec.validatingAdmissionPolicy.enabled is false: Gatekeeper's webhook alone enforces the features.")
	case !facts.MasterEnabled:
		return cond(metav1.ConditionFalse, ReasonMasterSwitchOff, "The master switch spec.enabled is off: nothing is enforced.")
	case st.EnabledFeatures == 0:
		return cond(metav1.ConditionFalse, ReasonNoFeatureEnabled, "No feature is enabled.")
	case facts.Failed != nil:
		return cond(metav1.ConditionUnknown, ReasonAPIServerNotEvaluated, "API-server enforcement was not evaluated: "+facts.Failed.Message)
	}
	var active, pending, errored, unbound []string
	for _, f := range st.Features {
		a := f.ValidatingAdmissionPolicy
		if a == nil {
			continue
		}
		switch a.State {
		case v1alpha1.APIServerActive:
			active = append(active, f.Name)
		case v1alpha1.APIServerPending:
			pending = append(pending, f.Name)
		case v1alpha1.APIServerError:
			errored = append(errored, fmt.Sprintf("%s: %s", f.Name, a.Message))
		case v1alpha1.APIServerNotBound:
			unbound = append(unbound, f.Name)
		}
	}
	notBound := ""
	if len(unbound) > 0 {
		notBound = fmt.Sprintf(" Not bound (warn, the webhook warns): %s.", strings.Join(unbound, ", "))
	}
	switch {
	case len(errored) > 0:
		return cond(metav1.ConditionFalse, ReasonAPIServerGenerationFailed, fmt.Sprintf("Gatekeeper could not generate the API server's policy for %d features: %s",
			len(errored), strings.Join(errored, "; ")))
	case len(pending) > 0:
		return cond(metav1.ConditionFalse, ReasonAPIServerPending, fmt.Sprintf("Waiting for Gatekeeper to generate the ValidatingAdmissionPolicy and binding of %d of %d features: %s.",
			len(pending), len(pending)+len(active), strings.Join(pending, ", "))+notBound)
	case len(active) == 0:
		return cond(metav1.ConditionFalse, ReasonAPIServerNothingBound, "No enabled feature binds a policy in the API server: every one is in warn, which Gatekeeper's webhook gives."+notBound)
	}
	return cond(metav1.ConditionTrue, ReasonAPIServerEnforced, fmt.Sprintf("The API server enforces %d features itself, through the ValidatingAdmissionPolicies and bindings Gatekeeper generated; pods violating them are denied even while Gatekeeper is down.",
		len(active))+notBound)
}

// observeVAP reads the policy Gatekeeper generates from the policy template and the binding it
// generates for each constraint that binds it, each once, for the enabled features. It starts
// the watches on the two kinds the first time it is needed.
func (r *Reconciler) observeVAP(ctx context.Context, features []featureFacts) {
	r.vapWatch.start(ctx)
	var policy *vapPolicyObservation
	policyErr := ""
	bindings := map[string]vapBindingObservation{}
	bindingErrs := map[string]string{}
	for i := range features {
		f := &features[i]
		if !f.Enabled || !f.VAP.Wanted {
			continue
		}
		if policy == nil {
			policy = &vapPolicyObservation{}
			p := &admissionregistrationv1.ValidatingAdmissionPolicy{}
			err := r.APIReader.Get(ctx, types.NamespacedName{Name: templates.PolicyName()}, p)
			switch {
			case err == nil:
				*policy = vapPolicyObservation{Exists: p.DeletionTimestamp.IsZero(), TypeWarnings: typeWarnings(p)}
			case !apierrors.IsNotFound(err):
				policyErr = err.Error()
			}
		}
		if policyErr != "" {
			f.VAP.ReadError = policyErr
			continue
		}
		f.VAP.Policy = *policy
		if !f.VAP.Binds {
			continue
		}
		name := templates.BindingName(f.ConstraintName)
		if _, done := bindings[name]; !done {
			obs := vapBindingObservation{}
			binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, binding)
			switch {
			case err == nil:
				obs = vapBindingObservation{Exists: binding.DeletionTimestamp.IsZero(), PolicyName: binding.Spec.PolicyName}
				for _, a := range binding.Spec.ValidationActions {
					obs.ValidationActions = append(obs.ValidationActions, string(a))
				}
			case !apierrors.IsNotFound(err):
				bindingErrs[name] = err.Error()
			}
			bindings[name] = obs
		}
		f.VAP.Binding = bindings[name]
		if msg := bindingErrs[name]; msg != "" {
			f.VAP.ReadError = msg
		}
	}
}

func typeWarnings(p *admissionregistrationv1.ValidatingAdmissionPolicy) []string {
	if p.Status.TypeChecking == nil {
		return nil
	}
	var out []string
	for _, w := range p.Status.TypeChecking.ExpressionWarnings {
		out = append(out, fmt.Sprintf("%s: %s", w.FieldRef, w.Warning))
	}
	return out
}

// vapWatches watches the ValidatingAdmissionPolicies and bindings Gatekeeper generates from our
// objects, once spec.validatingAdmissionPolicy is first switched on (then until the operator
// stops): a cluster that never uses the field caches none of them and needs no access to them
// at runtime.
type vapWatches struct {
	ctrl    controller.Controller
	cache   cache.Cache
	handler handler.EventHandler

	once sync.Once
}

func (w *vapWatches) start(ctx context.Context) {
	if w == nil || w.ctrl == nil {
		return
	}
	w.once.Do(func() {
		ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
			return strings.HasPrefix(o.GetName(), vapPolicyPrefix)
		})
		for _, obj := range []client.Object{&admissionregistrationv1.ValidatingAdmissionPolicy{}, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}} {
			if err := w.ctrl.Watch(source.Kind(w.cache, obj, w.handler, ours)); err != nil {
				logf.FromContext(ctx).Error(err, "Failed to watch; the status is refreshed periodically", "kind", fmt.Sprintf("%T", obj))
			}
		}
	})
}

// trimVAP keeps what observeVAP reads of a ValidatingAdmissionPolicy: a cluster may hold many,
// with large CEL sources.
func trimVAP(p *admissionregistrationv1.ValidatingAdmissionPolicy) {
	p.Spec.Variables, p.Spec.Validations, p.Spec.MatchConditions, p.Spec.AuditAnnotations = nil, nil, nil, nil
	p.Spec.MatchConstraints = nil
	p.Annotations = nil
}
