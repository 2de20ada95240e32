package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types, kstatus conventions: Ready always; Reconciling and Stalled only while true.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
	// ConditionWorkloadsChecked is true when Gatekeeper judges workloads (Deployments, Jobs,
	// ...) at apply time as the Pods they would create. It does not affect Ready: Pods are
	// checked either way.
	ConditionWorkloadsChecked = "WorkloadsChecked"
	// ConditionDefaultsActive is true when Gatekeeper's mutation completes pods that leave
	// fields unset, for every enabled feature with setDefaults on. It does not affect Ready:
	// the features are enforced either way.
	ConditionDefaultsActive = "DefaultsActive"
	// ConditionAPIServerEnforced is true when spec.validatingAdmissionPolicy is enabled and the
	// API server enforces every enabled feature that binds a policy through the
	// ValidatingAdmissionPolicy and binding Gatekeeper generated for it.
	ConditionAPIServerEnforced = "APIServerEnforced"
)

// APIServerState says whether the API server enforces a feature itself
// (spec.validatingAdmissionPolicy).
type APIServerState string

const (
	// APIServerActive: Gatekeeper generated the feature's ValidatingAdmissionPolicy and its
	// binding, and both exist.
	APIServerActive APIServerState = "Active"
	// APIServerPending: waiting for Gatekeeper to generate them (it waits 30 s after creating a
	// constraint CRD before it binds, by default).
	APIServerPending APIServerState = "Pending"
	// APIServerError: Gatekeeper reported an error generating them.
	APIServerError APIServerState = "Error"
	// APIServerNotBound: the feature is in warn; the webhook warns and no binding is made, so
	// that a request never gets the same warning twice.
	APIServerNotBound APIServerState = "NotBound"
)

// FeatureAPIServerStatus is the feature's enforcement by the API server itself.
type FeatureAPIServerStatus struct {
	// State: Active, Pending, Error or NotBound.
	// +kubebuilder:validation:Enum=Active;Pending;Error;NotBound
	State APIServerState `json:"state"`

	// PolicyName is the ValidatingAdmissionPolicy Gatekeeper generates from the policy
	// template (gatekeeper-pscpodsecurity), shared by every feature.
	// +optional
	PolicyName string `json:"policyName,omitempty"`

	// BindingName is the ValidatingAdmissionPolicyBinding Gatekeeper generates for the
	// feature's constraint (gatekeeper-pscpodsecurity-<constraintName>), shared by the features
	// of that constraint; empty when the feature binds none (warn).
	// +optional
	BindingName string `json:"bindingName,omitempty"`

	// ValidationActions are the binding's actions (Deny, or Audit for dryrun).
	// +listType=atomic
	// +optional
	ValidationActions []string `json:"validationActions,omitempty"`

	// Message explains the state in a sentence.
	// +optional
	Message string `json:"message,omitempty"`
}

// DefaultsState says whether a feature's defaults (setDefaults) are applied to pods.
type DefaultsState string

const (
	// DefaultsActive: every Gatekeeper pod that reports mutators loaded the feature's mutators
	// at their current generation.
	DefaultsActive DefaultsState = "Active"
	// DefaultsPending: the mutators were applied and Gatekeeper has not reported them yet.
	DefaultsPending DefaultsState = "Pending"
	// DefaultsUnavailable: Gatekeeper does not serve mutators (installed without mutation).
	DefaultsUnavailable DefaultsState = "Unavailable"
	// DefaultsError: applying the mutators failed or Gatekeeper reported an error for them.
	DefaultsError DefaultsState = "Error"
	// DefaultsWithheld: spec.setDefaults is on but the feature exempts images, which a
	// Gatekeeper mutator cannot leave out, and its own setDefaults is unset: nothing is
	// defaulted for it until its setDefaults says true (default every container, exempt ones
	// included) or false.
	DefaultsWithheld DefaultsState = "Withheld"
)

// FeatureState summarises one feature.
// +kubebuilder:validation:Enum=Enforced;Pending;Error;Disabled;NotEnforced
type FeatureState string

const (
	// FeatureEnforced: the template was created without errors and every Gatekeeper pod
	// enforces the constraint at its current generation.
	FeatureEnforced FeatureState = "Enforced"
	// FeaturePending: the feature's objects were applied and Gatekeeper has not caught up yet.
	FeaturePending FeatureState = "Pending"
	// FeatureError: Gatekeeper reported an error for the template or constraint, or applying
	// them failed.
	FeatureError FeatureState = "Error"
	// FeatureDisabled: the feature is off (or the master switch is); nothing is generated.
	FeatureDisabled FeatureState = "Disabled"
	// FeatureNotEnforced: Gatekeeper reports the constraint enforced, but the admission probe
	// found that its webhook is not judging pods now (Ready says why).
	FeatureNotEnforced FeatureState = "NotEnforced"
)

// MaxSampleViolations is how many audit violations a feature's status shows.
const MaxSampleViolations = 5

// PodSecurityConstraintsStatus is what the operator and Gatekeeper report.
type PodSecurityConstraintsStatus struct {
	// ObservedGeneration is the spec generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, and Reconciling / Stalled while they are true; WorkloadsChecked says
	// whether workloads are judged at apply time and DefaultsActive whether pods are completed
	// by setDefaults (neither affects Ready); APIServerEnforced whether the API server enforces
	// the features itself (spec.validatingAdmissionPolicy).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Profile is the Pod Security Standards profile in force (spec.profile), empty without one.
	// +optional
	Profile string `json:"profile,omitempty"`

	// ProfileVersion is the Pod Security Standards version the profile follows: spec.profileVersion,
	// or the latest the operator knows.
	// +optional
	ProfileVersion string `json:"profileVersion,omitempty"`

	// EnabledFeatures counts the features switched on (0 when the master switch is off).
	// +optional
	EnabledFeatures int32 `json:"enabledFeatures"`

	// EnforcedFeatures counts the features in state Enforced.
	// +optional
	EnforcedFeatures int32 `json:"enforcedFeatures"`

	// TotalViolations is the sum of the audit violations of the constraints (each
	// constraint's totalViolations, exact).
	// +optional
	TotalViolations int64 `json:"totalViolations"`

	// Features has one entry per feature, enabled or not, in API order.
	// +listType=map
	// +listMapKey=name
	// +optional
	Features []FeatureStatus `json:"features,omitempty"`
}

// FeatureStatus is the state of one feature.
type FeatureStatus struct {
	// Name is the feature's field name in spec, such as privilegedContainers.
	Name string `json:"name"`

	// State: Enforced, Pending, Error, Disabled, or NotEnforced while the admission probe finds
	// that Gatekeeper's webhook is not judging pods.
	State FeatureState `json:"state"`

	// TemplateName is the ConstraintTemplate that holds the feature's policy: pscpodsecurity,
	// one template for every feature.
	// +optional
	TemplateName string `json:"templateName,omitempty"`

	// ConstraintKind and ConstraintName identify the constraint that enforces the feature:
	// kind PSCPodSecurity, named psc-deny, psc-warn or psc-dryrun after the feature's
	// enforcement action (shared with the other features of that action), or after the feature
	// (e.g. psc-host-namespaces) when it has excludedNamespaces of its own.
	// +optional
	ConstraintKind string `json:"constraintKind,omitempty"`
	// +optional
	ConstraintName string `json:"constraintName,omitempty"`

	// EnforcementAction is the effective action of the constraint.
	// +optional
	EnforcementAction EnforcementAction `json:"enforcementAction,omitempty"`

	// TemplateCreated is Gatekeeper's status.created of the template.
	// +optional
	TemplateCreated bool `json:"templateCreated,omitempty"`

	// Enforced is true when Gatekeeper created the template and every Gatekeeper pod enforces
	// the current generation of the feature's constraint (switching a feature on or off
	// changes its constraint's parameters, and so its generation).
	// +optional
	Enforced bool `json:"enforced,omitempty"`

	// TotalViolations counts the feature's audit violations: its constraint's totalViolations
	// when the feature is alone in its constraint; otherwise the violations Gatekeeper lists on
	// the constraint whose message names the feature. Gatekeeper lists at most
	// --constraint-violations-limit violations per constraint (20 by default): beyond that the
	// count is a lower bound, which the feature's message says; status.totalViolations stays
	// exact.
	// +optional
	TotalViolations int64 `json:"totalViolations,omitempty"`

	// AuditTimestamp is when Gatekeeper's audit last ran for the feature's constraint.
	// +optional
	AuditTimestamp *metav1.Time `json:"auditTimestamp,omitempty"`

	// Violations are up to five of the feature's audit violations, as samples, out of those
	// Gatekeeper lists on its constraint.
	// +kubebuilder:validation:MaxItems=5
	// +listType=atomic
	// +optional
	Violations []Violation `json:"violations,omitempty"`

	// Message explains the state in a sentence.
	// +optional
	Message string `json:"message,omitempty"`

	// Defaults says whether the fields this feature requires are filled in on pods that leave
	// them unset (setDefaults): Active, Pending, Unavailable (Gatekeeper without mutation),
	// Error, or Withheld (spec.setDefaults is on, but the feature exempts images and its own
	// setDefaults is unset). Absent when defaults are off for the feature or it has nothing to
	// default.
	// +kubebuilder:validation:Enum=Active;Pending;Unavailable;Error;Withheld
	// +optional
	Defaults DefaultsState `json:"defaults,omitempty"`

	// ValidatingAdmissionPolicy says whether the API server enforces the feature itself
	// (spec.validatingAdmissionPolicy.enabled); absent when that is off.
	// +optional
	ValidatingAdmissionPolicy *FeatureAPIServerStatus `json:"validatingAdmissionPolicy,omitempty"`
	// DefaultsMessage explains a defaults state other than Active in a sentence.
	// +optional
	DefaultsMessage string `json:"defaultsMessage,omitempty"`
}

// Violation is one audit result.
type Violation struct {
	Kind string `json:"kind"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Message   string `json:"message"`
	// +optional
	EnforcementAction string `json:"enforcementAction,omitempty"`
}

// PodSecurityConstraints switches pod security features on for the whole cluster; the
// operator turns the enabled features into one Gatekeeper ConstraintTemplate and a constraint
// per enforcement action (and per feature with namespaces of its own).
// There is one per cluster, named "cluster".
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=psc,categories=policy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Profile",type=string,JSONPath=`.status.profile`,description="Pod Security Standards profile in force"
// +kubebuilder:printcolumn:name="PSS",type=string,JSONPath=`.status.profileVersion`,description="Pod Security Standards version the profile follows"
// +kubebuilder:printcolumn:name="Enabled",type=integer,JSONPath=`.status.enabledFeatures`,description="Features switched on"
// +kubebuilder:printcolumn:name="Enforced",type=integer,JSONPath=`.status.enforcedFeatures`,description="Features Gatekeeper enforces"
// +kubebuilder:printcolumn:name="Violations",type=integer,JSONPath=`.status.totalViolations`,description="Audit violations, all features"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'cluster'",message="there is one PodSecurityConstraints per cluster and it must be named 'cluster'"
type PodSecurityConstraints struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec PodSecurityConstraintsSpec `json:"spec,omitempty"`
	// +optional
	Status PodSecurityConstraintsStatus `json:"status,omitempty"`
}

// PodSecurityConstraintsList is a list of PodSecurityConstraints.
//
// +kubebuilder:object:root=true
type PodSecurityConstraintsList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodSecurityConstraints `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PodSecurityConstraints{}, &PodSecurityConstraintsList{})
}

// MasterEnabled reports the master switch; absent means on.
func (s *PodSecurityConstraintsSpec) MasterEnabled() bool {
	return s.Enabled == nil || *s.Enabled
}

// ValidatingAdmissionPolicyEnabled reports whether the API server enforces the features too
// (spec.validatingAdmissionPolicy.enabled); absent means off.
func (s *PodSecurityConstraintsSpec) ValidatingAdmissionPolicyEnabled() bool {
	return s.ValidatingAdmissionPolicy != nil && s.ValidatingAdmissionPolicy.Enabled
}

// WorkloadsEnabled reports whether workloads are checked; absent means on.
func (s *PodSecurityConstraintsSpec) WorkloadsEnabled() bool {
	return s.Workloads == nil || s.Workloads.Enabled == nil || *s.Workloads.Enabled
}
