package controllers

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// apiServerFacts are the facts of a feature in deny that Gatekeeper enforces on the webhook
// and whose ValidatingAdmissionPolicy and binding Gatekeeper generated.
func apiServerFacts(name string) featureFacts {
	f := enforcedFacts(name)
	f.Template.Generation = 4
	f.Template.VAP = []vapGeneration{{State: gatekeeperVAPGenerated, ObservedGeneration: 4}}
	f.Constraint.ByPod[1].VAP = vapGeneration{State: gatekeeperVAPGenerated, ObservedGeneration: 2}
	f.VAP = vapFacts{Wanted: true, Binds: true,
		Policy:  vapPolicyObservation{Exists: true},
		Binding: vapBindingObservation{Exists: true, PolicyName: templates.PolicyName(), ValidationActions: []string{"Deny"}}}
	return f
}

func TestAPIServerStatus(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mutate    func(*featureFacts)
		wantState v1alpha1.APIServerState // "" for no status
		wantMsg   string                  // substring
		wantFS    v1alpha1.FeatureState
	}{
		{"active", func(*featureFacts) {}, v1alpha1.APIServerActive,
			"The API server enforces the feature (Deny) through the ValidatingAdmissionPolicy gatekeeper-pscpodsecurity and the binding gatekeeper-pscpodsecurity-psc-host-namespaces.", v1alpha1.FeatureEnforced},
		{"not asked for", func(f *featureFacts) { f.VAP = vapFacts{} }, "", "", v1alpha1.FeatureEnforced},
		{"feature off", func(f *featureFacts) { f.Enabled = false }, "", "", v1alpha1.FeatureDisabled},
		{"warn is not bound", func(f *featureFacts) {
			f.EnforcementAction, f.VAP.Binds = v1alpha1.EnforcementWarn, false
		}, v1alpha1.APIServerNotBound, "The feature is in warn: Gatekeeper's webhook gives the warning", v1alpha1.FeatureEnforced},
		{"dryrun audits", func(f *featureFacts) {
			f.EnforcementAction, f.VAP.Binding.ValidationActions = v1alpha1.EnforcementDryRun, []string{"Audit"}
		}, v1alpha1.APIServerActive, "enforces the feature (Audit)", v1alpha1.FeatureEnforced},
		{"policy generation failed", func(f *featureFacts) {
			f.Template.VAP = []vapGeneration{{State: gatekeeperVAPError, Message: "ValidatingAdmissionPolicy is not generated: bad"}}
		}, v1alpha1.APIServerError, "Gatekeeper could not generate the API server's policy for the feature: ValidatingAdmissionPolicy gatekeeper-pscpodsecurity: ValidatingAdmissionPolicy is not generated: bad", v1alpha1.FeatureError},
		{"binding generation failed", func(f *featureFacts) {
			f.Constraint.ByPod[1].VAP = vapGeneration{State: gatekeeperVAPError, Message: "denied"}
		}, v1alpha1.APIServerError, "binding gatekeeper-pscpodsecurity-psc-host-namespaces: denied", v1alpha1.FeatureError},
		{"policy not generated yet", func(f *featureFacts) { f.Template.VAP = nil }, v1alpha1.APIServerPending,
			"Waiting for Gatekeeper to generate the ValidatingAdmissionPolicy gatekeeper-pscpodsecurity", v1alpha1.FeaturePending},
		{"policy generated for an older template", func(f *featureFacts) { f.Template.VAP[0].ObservedGeneration = 3 }, v1alpha1.APIServerPending,
			"Waiting for Gatekeeper to generate the ValidatingAdmissionPolicy", v1alpha1.FeaturePending},
		{"policy reported but missing", func(f *featureFacts) { f.VAP.Policy.Exists = false }, v1alpha1.APIServerPending,
			"reports the ValidatingAdmissionPolicy gatekeeper-pscpodsecurity generated, but it does not exist", v1alpha1.FeaturePending},
		{"Gatekeeper waits before binding", func(f *featureFacts) {
			f.Constraint.ByPod[1].VAP = vapGeneration{State: gatekeeperVAPWaiting, Message: "waiting until 2026-11-30T09:00:00Z"}
		}, v1alpha1.APIServerPending, "Gatekeeper waits before it generates the binding gatekeeper-pscpodsecurity-psc-host-namespaces (--default-wait-for-vapb-generation", v1alpha1.FeaturePending},
		{"binding not generated yet", func(f *featureFacts) { f.Constraint.ByPod[1].VAP = vapGeneration{} }, v1alpha1.APIServerPending,
			"Waiting for Gatekeeper to generate the binding", v1alpha1.FeaturePending},
		{"binding for an older constraint", func(f *featureFacts) { f.Constraint.ByPod[1].VAP.ObservedGeneration = 1 }, v1alpha1.APIServerPending,
			"Waiting for Gatekeeper to generate the binding", v1alpha1.FeaturePending},
		{"binding reported but missing", func(f *featureFacts) { f.VAP.Binding = vapBindingObservation{} }, v1alpha1.APIServerPending,
			"reports the binding gatekeeper-pscpodsecurity-psc-host-namespaces generated, but it does not exist", v1alpha1.FeaturePending},
		{"binding to another policy", func(f *featureFacts) { f.VAP.Binding.PolicyName = "other" }, v1alpha1.APIServerPending,
			`refers to "other"`, v1alpha1.FeaturePending},
		{"read error", func(f *featureFacts) { f.VAP.ReadError = "forbidden" }, v1alpha1.APIServerPending,
			"Reading the ValidatingAdmissionPolicy and its binding failed: forbidden", v1alpha1.FeaturePending},
		{"errors win over reading", func(f *featureFacts) {
			f.VAP.ReadError = "forbidden"
			f.Template.VAP = []vapGeneration{{State: gatekeeperVAPError, Message: "x"}}
		}, v1alpha1.APIServerError, "could not generate", v1alpha1.FeatureError},
		{"type-checking warnings shown", func(f *featureFacts) {
			f.VAP.Policy.TypeWarnings = []string{"spec.validations[0].expression: no such key"}
		},
			v1alpha1.APIServerActive, "Its type checking warns: spec.validations[0].expression: no such key", v1alpha1.FeatureEnforced},
		{"webhook state wins while Gatekeeper catches up", func(f *featureFacts) { f.Constraint.ByPod[0].Enforced = false; f.Template.VAP = nil },
			v1alpha1.APIServerPending, "Waiting for Gatekeeper to generate", v1alpha1.FeaturePending},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := apiServerFacts("hostNamespaces")
			tc.mutate(&f)
			st := featureStatus(f, true)
			got := st.ValidatingAdmissionPolicy
			switch {
			case tc.wantState == "" && got != nil:
				t.Fatalf("got %+v, want no status", got)
			case tc.wantState != "" && got == nil:
				t.Fatalf("got no status, want %s", tc.wantState)
			case got != nil && (got.State != tc.wantState || !strings.Contains(got.Message, tc.wantMsg)):
				t.Errorf("got %s %q, want %s containing %q", got.State, got.Message, tc.wantState, tc.wantMsg)
			}
			if st.State != tc.wantFS {
				t.Errorf("feature state %s (%s), want %s", st.State, st.Message, tc.wantFS)
			}
			if st.Enforced != (st.State == v1alpha1.FeatureEnforced) {
				t.Errorf("enforced = %v with state %s", st.Enforced, st.State)
			}
		})
	}
}

func TestAPIServerConditionAndReady(t *testing.T) {
	warn := func() featureFacts {
		f := apiServerFacts("privilegedContainers")
		f.EnforcementAction, f.VAP.Binds = v1alpha1.EnforcementWarn, false
		return f
	}
	pendingVAP := func() featureFacts {
		f := apiServerFacts("hostNamespaces")
		f.Template.VAP = nil
		return f
	}
	failedVAP := func() featureFacts {
		f := apiServerFacts("hostNamespaces")
		f.Template.VAP = []vapGeneration{{State: gatekeeperVAPError, Message: "boom"}}
		return f
	}
	webhookOnly := func(name string) featureFacts {
		f := enforcedFacts(name)
		return f
	}
	down := &admissionFacts{Verdict: VerdictNotEnforced, Message: "Pods are admitted unchecked: a probe pod was admitted.", Since: time.Unix(0, 0)}
	verified := &admissionFacts{Verdict: VerdictEnforced, Message: "denied", Since: time.Unix(0, 0)}
	for _, tc := range []struct {
		name       string
		vap        bool
		master     bool
		features   []featureFacts
		admission  *admissionFacts
		failed     *failure
		wantCond   metav1.ConditionStatus
		wantReason string
		wantMsg    string // substring of APIServerEnforced's message
		wantReady  string // Ready's reason
		wantRMsg   string // substring of Ready's message
		wantStates []v1alpha1.FeatureState
	}{
		{name: "off", vap: false, master: true, features: []featureFacts{webhookOnly("hostNamespaces")}, admission: verified,
			wantCond: metav1.ConditionFalse, wantReason: ReasonAPIServerDisabled, wantMsg: "Gatekeeper's webhook alone enforces",
			wantReady: ReasonEnforced, wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureEnforced}},
		{name: "off, Gatekeeper down: admitted unchecked", vap: false, master: true, features: []featureFacts{webhookOnly("hostNamespaces")}, admission: down,
			wantCond: metav1.ConditionFalse, wantReason: ReasonAPIServerDisabled,
			wantReady: ReasonAdmissionNotEnforced, wantRMsg: "Pods are admitted unchecked", wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureNotEnforced}},
		{name: "all active", vap: true, master: true, features: []featureFacts{apiServerFacts("hostNamespaces"), apiServerFacts("capabilities")}, admission: verified,
			wantCond: metav1.ConditionTrue, wantReason: ReasonAPIServerEnforced, wantMsg: "The API server enforces 2 features itself",
			wantReady: ReasonEnforced, wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureEnforced, v1alpha1.FeatureEnforced}},
		{name: "warn feature named as not bound", vap: true, master: true, features: []featureFacts{warn(), apiServerFacts("hostNamespaces")}, admission: verified,
			wantCond: metav1.ConditionTrue, wantReason: ReasonAPIServerEnforced, wantMsg: "Not bound (warn, the webhook warns): privilegedContainers.",
			wantReady: ReasonEnforced, wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureEnforced, v1alpha1.FeatureEnforced}},
		{name: "only warn features", vap: true, master: true, features: []featureFacts{warn()}, admission: verified,
			wantCond: metav1.ConditionFalse, wantReason: ReasonAPIServerNothingBound, wantMsg: "every one is in warn",
			wantReady: ReasonEnforced, wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureEnforced}},
		{name: "pending holds Ready at Progressing", vap: true, master: true, features: []featureFacts{pendingVAP(), apiServerFacts("capabilities")}, admission: verified,
			wantCond: metav1.ConditionFalse, wantReason: ReasonAPIServerPending, wantMsg: "of 1 of 2 features: hostNamespaces.",
			wantReady: ReasonProgressing, wantRMsg: "hostNamespaces", wantStates: []v1alpha1.FeatureState{v1alpha1.FeaturePending, v1alpha1.FeatureEnforced}},
		{name: "generation error is a feature error", vap: true, master: true, features: []featureFacts{failedVAP()}, admission: verified,
			wantCond: metav1.ConditionFalse, wantReason: ReasonAPIServerGenerationFailed, wantMsg: "for 1 features: hostNamespaces: Gatekeeper could not generate",
			wantReady: ReasonFeatureError, wantRMsg: "hostNamespaces: Gatekeeper could not generate the API server's policy for the feature: ValidatingAdmissionPolicy gatekeeper-pscpodsecurity: boom",
			wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureError}},
		{name: "Gatekeeper down: enforced by the API server only", vap: true, master: true, features: []featureFacts{apiServerFacts("hostNamespaces"), apiServerFacts("capabilities")}, admission: down,
			wantCond: metav1.ConditionTrue, wantReason: ReasonAPIServerEnforced,
			wantReady: ReasonEnforcedByAPIServerOnly, wantRMsg: "Only the API server enforces now: a probe pod was admitted. The API server still enforces 2 of the 2 enabled features itself",
			wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureEnforced, v1alpha1.FeatureEnforced}},
		{name: "Gatekeeper down: warn features are not enforced at all", vap: true, master: true, features: []featureFacts{warn(), apiServerFacts("hostNamespaces")}, admission: down,
			wantCond: metav1.ConditionTrue, wantReason: ReasonAPIServerEnforced,
			wantReady: ReasonEnforcedByAPIServerOnly, wantRMsg: "Not enforced at all now: privilegedContainers.",
			wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureNotEnforced, v1alpha1.FeatureEnforced}},
		{name: "Gatekeeper down before any policy was bound: admitted unchecked", vap: true, master: true, features: []featureFacts{pendingVAP()}, admission: down,
			wantCond: metav1.ConditionFalse, wantReason: ReasonAPIServerPending,
			wantReady: ReasonAdmissionNotEnforced, wantRMsg: "Pods are admitted unchecked", wantStates: []v1alpha1.FeatureState{v1alpha1.FeaturePending}},
		{name: "master switch off", vap: true, master: false, features: []featureFacts{{Feature: feature("hostNamespaces")}},
			wantCond: metav1.ConditionFalse, wantReason: ReasonMasterSwitchOff, wantReady: ReasonMasterSwitchOff,
			wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureDisabled}},
		{name: "no feature", vap: true, master: true, features: []featureFacts{{Feature: feature("hostNamespaces")}},
			wantCond: metav1.ConditionFalse, wantReason: ReasonNoFeatureEnabled, wantReady: ReasonEnforced,
			wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureDisabled}},
		{name: "not evaluated after a failed step", vap: true, master: true, features: []featureFacts{apiServerFacts("hostNamespaces")},
			failed:   &failure{Reason: ReasonGatekeeperNotInstalled, Message: "not installed"},
			wantCond: metav1.ConditionUnknown, wantReason: ReasonAPIServerNotEvaluated, wantMsg: "not installed", wantReady: ReasonGatekeeperNotInstalled,
			wantStates: []v1alpha1.FeatureState{v1alpha1.FeatureEnforced}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			facts := reconcileFacts{Generation: 3, MasterEnabled: tc.master, VAPEnabled: tc.vap, Features: tc.features, Admission: tc.admission, Failed: tc.failed}
			if !tc.vap {
				for i := range facts.Features {
					facts.Features[i].VAP = vapFacts{}
				}
			}
			st := deriveStatus(facts, v1alpha1.PodSecurityConstraintsStatus{}, metav1.Now())
			cond := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionAPIServerEnforced)
			if cond == nil || cond.Status != tc.wantCond || cond.Reason != tc.wantReason || !strings.Contains(cond.Message, tc.wantMsg) {
				t.Errorf("APIServerEnforced = %+v, want %s/%s containing %q", cond, tc.wantCond, tc.wantReason, tc.wantMsg)
			}
			ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
			if ready == nil || ready.Reason != tc.wantReady || !strings.Contains(ready.Message, tc.wantRMsg) {
				t.Errorf("Ready = %+v, want reason %s containing %q", ready, tc.wantReady, tc.wantRMsg)
			}
			if ready != nil && ready.Reason == ReasonEnforcedByAPIServerOnly && ready.Status != metav1.ConditionFalse {
				t.Errorf("Ready must be False while only the API server enforces, got %s", ready.Status)
			}
			for i, want := range tc.wantStates {
				if got := st.Features[i].State; got != want {
					t.Errorf("feature %s: state %s (%s), want %s", st.Features[i].Name, got, st.Features[i].Message, want)
				}
			}
		})
	}
}
