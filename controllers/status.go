package controllers

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// Ready reasons. Events use the same reasons.
const (
	ReasonEnforced               = "Enforced"
	ReasonMasterSwitchOff        = "MasterSwitchOff"
	ReasonProgressing            = "Progressing"
	ReasonFeatureError           = "FeatureError"
	ReasonInvalidSpec            = "InvalidSpec"
	ReasonDuplicate              = "Duplicate"
	ReasonRenderFailed           = "RenderFailed"
	ReasonGatekeeperNotInstalled = "GatekeeperNotInstalled"
	ReasonPruneFailed            = "PruneFailed"
	ReasonStatusReadFailed       = "StatusReadFailed"
	ReasonSpecCheckFailed        = "SpecCheckFailed"
	ReasonPruned                 = "Pruned"
	ReasonApplied                = "Applied"
)

// WorkloadsChecked reasons.
const (
	ReasonWorkloadsChecked      = "Checked"
	ReasonWorkloadsDisabled     = "Disabled"
	ReasonNoFeatureEnabled      = "NoFeatureEnabled"
	ReasonExpansionUnavailable  = "ExpansionUnavailable"
	ReasonExpansionApplyFailed  = "ApplyFailed"
	ReasonExpansionError        = "ExpansionError"
	ReasonExpansionNotReported  = "ExpansionNotReported"
	ReasonWorkloadsNotEvaluated = "NotEvaluated"
)

// reconcileFacts is what one reconcile found out; status and conditions are derived from it
// by the pure functions below.
type reconcileFacts struct {
	Generation    int64
	MasterEnabled bool
	// Profile and ProfileVersion are the Pod Security Standards profile in force, if any.
	Profile, ProfileVersion string
	// Stalled is set for a spec the operator will not act on until it changes.
	Stalled *failure
	// Failed is set when a reconcile step failed and will be retried.
	Failed *failure
	// Unchecked is set when the spec could not be validated (SpecCheckFailed): like a
	// stalled spec, the reconcile stopped before it knew the features and changed nothing.
	Unchecked bool
	// Features has one entry per feature in API order.
	Features []featureFacts
	// Workloads is what the spec asks for workloads.
	Workloads workloadsFacts
	// Objects are the applied objects of no single feature (expansion templates), in apply
	// order.
	Objects []objectFacts
	// Admission is the admission probe's verdict; nil when the probe is off or has nothing
	// to verify (admission.go).
	Admission *admissionFacts
	// VAPEnabled is spec.validatingAdmissionPolicy.enabled (vap.go).
	VAPEnabled bool
}

// workloadsFacts is what the spec asks of workload checks.
type workloadsFacts struct {
	// Enabled is spec.workloads.enabled.
	Enabled bool
	// Kinds counts the workload kinds to check (built-in and extra).
	Kinds int
}

// objectFacts is what one reconcile found out about an object of no single feature.
type objectFacts struct {
	Role       templates.Role
	Kind, Name string
	// CRD serves the object's kind; CRDMissing is set when it does not exist, and the object
	// was not applied.
	CRD        string
	CRDMissing bool
	ApplyError string
	Observed   gatekeeperObjectObservation
}

type failure struct {
	Reason  string
	Message string
}

// featureFacts is what one reconcile found out about one feature.
type featureFacts struct {
	Feature           templates.Feature
	Enabled           bool
	EnforcementAction v1alpha1.EnforcementAction
	// ApplyError is set when applying the feature's objects failed.
	ApplyError string
	// Waiting is set when applying had to wait for Gatekeeper (an ordering error).
	Waiting string
	// Template is the policy template's observation, shared by every enabled feature.
	Template           templateObservation
	ConstraintCRDReady bool
	// ConstraintName is the constraint that enforces the feature, and ConstraintFeatures
	// every feature it enforces; Constraint is its observation.
	ConstraintName     string
	ConstraintFeatures []string
	Constraint         constraintObservation
	// Defaults is what the reconcile found out about the feature's mutators.
	Defaults defaultsFacts
	// VAP is what the reconcile found out about the feature's enforcement by the API server.
	VAP vapFacts
}

// featureStatus derives one feature's status.
func featureStatus(f featureFacts, masterEnabled bool) v1alpha1.FeatureStatus {
	st := v1alpha1.FeatureStatus{Name: f.Feature.Name}
	if !f.Enabled {
		st.State = v1alpha1.FeatureDisabled
		st.Message = "The feature is disabled."
		if !masterEnabled {
			st.Message = "The master switch spec.enabled is off."
		}
		return st
	}
	st.TemplateName = templates.PolicyTemplateName
	st.ConstraintKind = templates.PolicyKind
	st.ConstraintName = f.ConstraintName
	st.EnforcementAction = f.EnforcementAction
	st.TemplateCreated = f.Template.Created
	v := featureViolations(f)
	st.TotalViolations = v.Total
	st.AuditTimestamp = f.Constraint.AuditTimestamp
	st.Violations = v.Samples
	st.State, st.Message = featureState(f)
	st.ValidatingAdmissionPolicy = apiServerStatus(f)
	featureStateUnderAPIServer(&st)
	st.Enforced = st.State == v1alpha1.FeatureEnforced
	st.Defaults, st.DefaultsMessage = defaultsState(f.Defaults)
	return st
}

// featureState is the chain of checks from applied to enforced; the first that fails names
// the state.
func featureState(f featureFacts) (v1alpha1.FeatureState, string) {
	switch {
	case f.ApplyError != "":
		return v1alpha1.FeatureError, f.ApplyError
	case len(f.Template.Errors) > 0:
		return v1alpha1.FeatureError, "Gatekeeper reported template errors: " + strings.Join(f.Template.Errors, "; ")
	case f.Waiting != "":
		return v1alpha1.FeaturePending, f.Waiting
	case !f.Template.Exists:
		return v1alpha1.FeaturePending, "The ConstraintTemplate is not applied yet."
	case !f.Template.Created:
		return v1alpha1.FeaturePending, "Waiting for Gatekeeper to create the ConstraintTemplate."
	case !f.ConstraintCRDReady:
		return v1alpha1.FeaturePending, "Waiting for Gatekeeper to establish the constraint CRD."
	case !f.Constraint.Exists:
		return v1alpha1.FeaturePending, "The constraint is not applied yet."
	}
	var errs []string
	waiting := 0
	for _, p := range f.Constraint.ByPod {
		errs = append(errs, p.Errors...)
		if !p.Enforced || p.ObservedGeneration != f.Constraint.Generation {
			waiting++
		}
	}
	switch {
	case len(errs) > 0:
		return v1alpha1.FeatureError, "Gatekeeper reported constraint errors: " + strings.Join(uniqueSorted(errs), "; ")
	case len(f.Constraint.ByPod) == 0:
		return v1alpha1.FeaturePending, "Waiting for Gatekeeper to report the constraint's status."
	case waiting > 0:
		return v1alpha1.FeaturePending, fmt.Sprintf("Waiting for %d of %d Gatekeeper pods to enforce generation %d of the constraint.",
			waiting, len(f.Constraint.ByPod), f.Constraint.Generation)
	}
	v := featureViolations(f)
	audit := fmt.Sprintf("%d audit violations.", v.Total)
	if !v.Exact {
		audit = fmt.Sprintf("at least %d audit violations (the constraint %s, shared with other features, has %d; Gatekeeper lists %d of them, see --constraint-violations-limit).",
			v.Total, f.ConstraintName, f.Constraint.TotalViolations, len(f.Constraint.Violations))
	}
	return v1alpha1.FeatureEnforced, fmt.Sprintf("Enforced (%s) by %d Gatekeeper pods; %s",
		f.EnforcementAction, len(f.Constraint.ByPod), audit)
}

// violationCount is a feature's share of its constraint's audit results.
type violationCount struct {
	// Total counts the feature's violations; Exact is false when it is a lower bound.
	Total int64
	Exact bool
	// Samples are the first of them.
	Samples []v1alpha1.Violation
}

// featureViolations picks a feature's audit results out of its constraint's: those whose
// message names the feature (templates.FeatureOfMessage). The count is exact when the
// constraint enforces the feature alone (its totalViolations), or when Gatekeeper listed every
// violation of the constraint (status.violations holds up to --constraint-violations-limit, 20
// by default); otherwise it counts the listed ones, a lower bound.
func featureViolations(f featureFacts) violationCount {
	alone := len(f.ConstraintFeatures) == 1 && f.ConstraintFeatures[0] == f.Feature.Name
	out := violationCount{Exact: alone || f.Constraint.TotalViolations <= int64(len(f.Constraint.Violations))}
	var listed int64
	for _, v := range f.Constraint.Violations {
		if !alone && templates.FeatureOfMessage(v.Message) != f.Feature.Name {
			continue
		}
		listed++
		if len(out.Samples) < v1alpha1.MaxSampleViolations {
			out.Samples = append(out.Samples, v)
		}
	}
	out.Total = listed
	if alone {
		out.Total = f.Constraint.TotalViolations
	}
	return out
}

// constraintViolations is the sum of the audit violations of the constraints the enabled
// features' status comes from: exact, whatever Gatekeeper lists of them.
func constraintViolations(features []featureFacts) int64 {
	seen := map[string]bool{}
	var total int64
	for _, f := range features {
		if !f.Enabled || f.ConstraintName == "" || !f.Constraint.Exists || seen[f.ConstraintName] {
			continue
		}
		seen[f.ConstraintName] = true
		total += f.Constraint.TotalViolations
	}
	return total
}

// deriveStatus computes the whole status from the facts and the previous status; now is the
// transition time of conditions that change.
func deriveStatus(facts reconcileFacts, prev v1alpha1.PodSecurityConstraintsStatus, now metav1.Time) v1alpha1.PodSecurityConstraintsStatus {
	st := v1alpha1.PodSecurityConstraintsStatus{
		ObservedGeneration: prev.ObservedGeneration,
		Conditions:         append([]metav1.Condition(nil), prev.Conditions...),
	}
	if !facts.featuresUnknown() {
		st.Profile, st.ProfileVersion = facts.Profile, facts.ProfileVersion
		for _, f := range facts.Features {
			fs := featureStatus(f, facts.MasterEnabled)
			featureStateUnderAdmission(&fs, facts.Admission)
			st.Features = append(st.Features, fs)
			if f.Enabled {
				st.EnabledFeatures++
			}
			if fs.State == v1alpha1.FeatureEnforced {
				st.EnforcedFeatures++
			}
		}
		st.TotalViolations = constraintViolations(facts.Features)
	} else {
		// A stalled or unchecked object keeps the last known feature status: nothing was changed.
		st.Features = prev.Features
		st.Profile, st.ProfileVersion = prev.Profile, prev.ProfileVersion
		st.EnabledFeatures, st.EnforcedFeatures, st.TotalViolations = prev.EnabledFeatures, prev.EnforcedFeatures, prev.TotalViolations
	}

	ready := readyCondition(facts, st)
	ready.ObservedGeneration = facts.Generation
	setCondition(&st.Conditions, ready, now)

	reconciling := ready.Status == metav1.ConditionFalse && ready.Reason == ReasonProgressing
	setOrRemove(&st.Conditions, reconciling, metav1.Condition{
		Type: v1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: ready.Reason,
		Message: ready.Message, ObservedGeneration: facts.Generation,
	}, now)
	// Errors Gatekeeper reports for a template or constraint do not go away without a change
	// (of the spec, or of Gatekeeper): kstatus calls that stalled, and Flux and Argo CD then
	// report a failure instead of waiting for a timeout.
	stalled := facts.Stalled != nil || ready.Reason == ReasonFeatureError
	setOrRemove(&st.Conditions, stalled, metav1.Condition{
		Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: ready.Reason,
		Message: ready.Message, ObservedGeneration: facts.Generation,
	}, now)

	if !facts.featuresUnknown() {
		workloads := workloadsCondition(facts, st)
		workloads.ObservedGeneration = facts.Generation
		setCondition(&st.Conditions, workloads, now)
		defaults := defaultsCondition(facts)
		defaults.ObservedGeneration = facts.Generation
		setCondition(&st.Conditions, defaults, now)
		apiServer := apiServerCondition(facts, st)
		apiServer.ObservedGeneration = facts.Generation
		setCondition(&st.Conditions, apiServer, now)
	}

	// The generation counts as observed once the spec was fully handled or failed for good.
	if facts.Stalled != nil || ready.Status == metav1.ConditionTrue || ready.Reason == ReasonFeatureError {
		st.ObservedGeneration = facts.Generation
	}
	return st
}

// featuresUnknown reports a reconcile that stopped before it knew the spec's features
// (invalid, or not validated yet) and changed nothing in the cluster.
func (facts reconcileFacts) featuresUnknown() bool {
	return facts.Stalled != nil || facts.Unchecked
}

// readyCondition is Ready from the facts: a stalled spec first, then a failed step, then
// feature errors, then features still pending.
func readyCondition(facts reconcileFacts, st v1alpha1.PodSecurityConstraintsStatus) metav1.Condition {
	notReady := func(reason, msg string) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg}
	}
	switch {
	case facts.Stalled != nil:
		return notReady(facts.Stalled.Reason, facts.Stalled.Message)
	case facts.Failed != nil:
		return notReady(facts.Failed.Reason, facts.Failed.Message)
	}
	if c, blocked := admissionBlocksReady(facts.Admission, st); blocked {
		return c
	}
	var errored, pending []string
	for _, f := range st.Features {
		switch f.State {
		case v1alpha1.FeatureError:
			errored = append(errored, fmt.Sprintf("%s: %s", f.Name, f.Message))
		case v1alpha1.FeaturePending:
			pending = append(pending, f.Name)
		}
	}
	switch {
	case len(errored) > 0:
		return notReady(ReasonFeatureError, fmt.Sprintf("%d of %d enabled features failed: %s",
			len(errored), st.EnabledFeatures, strings.Join(errored, "; ")))
	case len(pending) > 0:
		return notReady(ReasonProgressing, fmt.Sprintf("Waiting for Gatekeeper to enforce %d of %d enabled features: %s",
			len(pending), st.EnabledFeatures, strings.Join(pending, ", ")))
	case !facts.MasterEnabled:
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonMasterSwitchOff,
			Message: "The master switch spec.enabled is off: no policies are generated."}
	case facts.Admission != nil && facts.Admission.Verdict == VerdictVerifying:
		if facts.Admission.Message != "" {
			return notReady(ReasonProgressing, facts.Admission.Message)
		}
		return notReady(ReasonProgressing, fmt.Sprintf("Gatekeeper enforces all %d enabled features; verifying with a probe pod that admission denies violations.",
			st.EnabledFeatures))
	case facts.Admission != nil && facts.Admission.Verdict == VerdictEnforced:
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonEnforced,
			Message: fmt.Sprintf("All %d enabled features are enforced; a probe pod verifies that admission denies violations.", st.EnabledFeatures)}
	}
	return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonEnforced,
		Message: fmt.Sprintf("All %d enabled features are enforced.", st.EnabledFeatures)}
}

func setCondition(conds *[]metav1.Condition, c metav1.Condition, now metav1.Time) {
	c.LastTransitionTime = now
	meta.SetStatusCondition(conds, c)
}

func setOrRemove(conds *[]metav1.Condition, present bool, c metav1.Condition, now metav1.Time) {
	if present {
		setCondition(conds, c, now)
		return
	}
	meta.RemoveStatusCondition(conds, c.Type)
}

// workloadsCondition is WorkloadsChecked: whether Gatekeeper judges workloads at apply time as
// the Pods they would create. It never changes Ready: Pods stay enforced without it, and a
// cluster whose Gatekeeper cannot expand workloads is still protected.
func workloadsCondition(facts reconcileFacts, st v1alpha1.PodSecurityConstraintsStatus) metav1.Condition {
	cond := func(status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionWorkloadsChecked, Status: status, Reason: reason, Message: msg}
	}
	notChecked := func(reason, msg string) metav1.Condition {
		return cond(metav1.ConditionFalse, reason, msg)
	}
	const podsStill = " Pods are still checked when they are created."
	switch {
	case !facts.MasterEnabled:
		return notChecked(ReasonMasterSwitchOff, "The master switch spec.enabled is off: nothing is checked.")
	case !facts.Workloads.Enabled:
		return notChecked(ReasonWorkloadsDisabled, "spec.workloads.enabled is false: workloads are not checked at apply time."+podsStill)
	case st.EnabledFeatures == 0:
		return notChecked(ReasonNoFeatureEnabled, "No feature is enabled, so there is nothing to check workloads against.")
	case facts.Failed != nil:
		return cond(metav1.ConditionUnknown, ReasonWorkloadsNotEvaluated, "Workload checks were not evaluated: "+facts.Failed.Message)
	}
	var missing, failed, errored, unreported []string
	expansions := 0
	for _, o := range facts.Objects {
		if o.Role != templates.RoleExpansion {
			continue
		}
		expansions++
		switch {
		case o.CRDMissing:
			missing = append(missing, o.Name)
		case o.ApplyError != "":
			failed = append(failed, fmt.Sprintf("%s: %s", o.Name, o.ApplyError))
		default:
			var errs []string
			current := len(o.Observed.ByPod) > 0
			for _, p := range o.Observed.ByPod {
				errs = append(errs, p.Errors...)
				if p.ObservedGeneration != o.Observed.Generation {
					current = false
				}
			}
			switch {
			case len(errs) > 0:
				errored = append(errored, fmt.Sprintf("%s: %s", o.Name, strings.Join(uniqueSorted(errs), "; ")))
			case !current:
				unreported = append(unreported, o.Name)
			}
		}
	}
	switch {
	case expansions == 0:
		return cond(metav1.ConditionUnknown, ReasonWorkloadsNotEvaluated, "No ExpansionTemplate was applied yet.")
	case len(missing) > 0:
		return notChecked(ReasonExpansionUnavailable, "Gatekeeper does not serve ExpansionTemplates (the CRD "+templates.ExpansionCRDName+
			" does not exist; Gatekeeper before v3.10 or installed without it): workloads are not checked at apply time."+podsStill)
	case len(failed) > 0:
		return notChecked(ReasonExpansionApplyFailed, fmt.Sprintf("Applying %d of %d ExpansionTemplates failed: %s.", len(failed), expansions, strings.Join(failed, "; "))+podsStill)
	case len(errored) > 0:
		return notChecked(ReasonExpansionError, fmt.Sprintf("Gatekeeper reported errors for %d of %d ExpansionTemplates: %s.", len(errored), expansions, strings.Join(errored, "; "))+podsStill)
	case len(unreported) > 0:
		return notChecked(ReasonExpansionNotReported, fmt.Sprintf("Waiting for Gatekeeper to load %d of %d ExpansionTemplates (%s). If this persists, Gatekeeper runs with --enable-generator-resource-expansion=false (or no pod runs its status operation) and workloads are not checked at apply time.",
			len(unreported), expansions, strings.Join(unreported, ", "))+podsStill)
	}
	return cond(metav1.ConditionTrue, ReasonWorkloadsChecked, fmt.Sprintf("%d workload kinds are judged at apply time as the Pods they would create, by %d enabled features.",
		facts.Workloads.Kinds, st.EnabledFeatures))
}
