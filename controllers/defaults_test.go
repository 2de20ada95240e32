package controllers

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// loadedMutator is a mutator every Gatekeeper pod reports at its current generation.
func loadedMutator(name string) namedObservation {
	return namedObservation{Name: name, Observed: gatekeeperObjectObservation{Exists: true, Generation: 1, ByPod: []constraintPodStatus{
		{ID: "gk-audit", ObservedGeneration: 1}, {ID: "gk-webhook", ObservedGeneration: 1},
	}}}
}

func withDefaults(name string, mutate func(*defaultsFacts)) featureFacts {
	f := enforcedFacts(name)
	f.Defaults = defaultsFacts{Wanted: 2, Observed: []namedObservation{loadedMutator("m1"), loadedMutator("m2")}}
	if mutate != nil {
		mutate(&f.Defaults)
	}
	return f
}

func TestDefaultsState(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*defaultsFacts)
		want    v1alpha1.DefaultsState
		wantWhy string
	}{
		{"active", nil, v1alpha1.DefaultsActive, ""},
		{"off", func(d *defaultsFacts) { *d = defaultsFacts{} }, "", ""},
		{"mutation not installed", func(d *defaultsFacts) { d.CRDMissing, d.Observed = true, nil }, v1alpha1.DefaultsUnavailable, "Gatekeeper does not serve mutators"},
		{"apply failed", func(d *defaultsFacts) { d.ApplyErrors = []string{"applying Assign x: forbidden"} }, v1alpha1.DefaultsError, "applying Assign x: forbidden"},
		{"gatekeeper error", func(d *defaultsFacts) { d.Observed[1].Observed.ByPod[0].Errors = []string{"schema conflict"} }, v1alpha1.DefaultsError, "m2: schema conflict"},
		{"not reported", func(d *defaultsFacts) { d.Observed[0].Observed.ByPod = nil }, v1alpha1.DefaultsPending, "waiting for Gatekeeper to load m1"},
		{"old generation", func(d *defaultsFacts) { d.Observed[1].Observed.Generation = 2 }, v1alpha1.DefaultsPending, "waiting for Gatekeeper to load m2"},
		{"withheld for exempt images", func(d *defaultsFacts) { *d = defaultsFacts{Withheld: "the feature exempts images (falco)"} }, v1alpha1.DefaultsWithheld, "exempts images (falco)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := withDefaults("readOnlyRootFilesystem", tc.mutate)
			got, why := defaultsState(f.Defaults)
			if got != tc.want || !strings.Contains(why, tc.wantWhy) {
				t.Errorf("got %q (%q), want %q (%q)", got, why, tc.want, tc.wantWhy)
			}
			st := featureStatus(f, true)
			if st.Defaults != tc.want || st.State != v1alpha1.FeatureEnforced {
				t.Errorf("feature status defaults %q state %q: defaults must never change the feature's state", st.Defaults, st.State)
			}
			if st.DefaultsMessage != why {
				t.Errorf("feature status defaultsMessage %q, want %q", st.DefaultsMessage, why)
			}
		})
	}
}

func TestDefaultsCondition(t *testing.T) {
	for _, tc := range []struct {
		name       string
		facts      reconcileFacts
		wantStatus metav1.ConditionStatus
		wantReason string
		wantMsg    string
	}{
		{name: "master switch off", facts: reconcileFacts{}, wantStatus: metav1.ConditionFalse, wantReason: ReasonMasterSwitchOff},
		{name: "no feature with defaults", facts: reconcileFacts{MasterEnabled: true, Features: []featureFacts{enforcedFacts("privilegedContainers")}},
			wantStatus: metav1.ConditionFalse, wantReason: ReasonDefaultsOff, wantMsg: "denied"},
		{name: "active", facts: reconcileFacts{MasterEnabled: true, Features: []featureFacts{withDefaults("readOnlyRootFilesystem", nil), withDefaults("seccomp", nil), enforcedFacts("sysctls")}},
			wantStatus: metav1.ConditionTrue, wantReason: ReasonDefaultsActive, wantMsg: "for 2 features: readOnlyRootFilesystem, seccomp."},
		{name: "gatekeeper without mutation", facts: reconcileFacts{MasterEnabled: true, Features: []featureFacts{
			withDefaults("readOnlyRootFilesystem", func(d *defaultsFacts) { d.CRDMissing, d.Observed = true, nil }),
		}}, wantStatus: metav1.ConditionFalse, wantReason: ReasonMutationUnavailable, wantMsg: "The features are still enforced"},
		{name: "mutator error", facts: reconcileFacts{MasterEnabled: true, Features: []featureFacts{
			withDefaults("seccomp", nil),
			withDefaults("readOnlyRootFilesystem", func(d *defaultsFacts) { d.ApplyErrors = []string{"forbidden"} }),
		}}, wantStatus: metav1.ConditionFalse, wantReason: ReasonMutatorError, wantMsg: "readOnlyRootFilesystem (forbidden)"},
		{name: "not reported", facts: reconcileFacts{MasterEnabled: true, Features: []featureFacts{
			withDefaults("seccomp", func(d *defaultsFacts) { d.Observed[0].Observed.ByPod = nil }),
		}}, wantStatus: metav1.ConditionFalse, wantReason: ReasonMutatorsNotReported, wantMsg: "--operation=mutation-status"},
		{name: "all withheld", facts: reconcileFacts{MasterEnabled: true, Features: []featureFacts{
			withDefaults("readOnlyRootFilesystem", func(d *defaultsFacts) { *d = defaultsFacts{Withheld: "the feature exempts images (falco)"} }),
		}}, wantStatus: metav1.ConditionFalse, wantReason: ReasonDefaultsWithheld, wantMsg: "withheld for readOnlyRootFilesystem (the feature exempts images (falco)). Their fields are not filled in"},
		{name: "some withheld, the rest active", facts: reconcileFacts{MasterEnabled: true, Features: []featureFacts{
			withDefaults("readOnlyRootFilesystem", func(d *defaultsFacts) { *d = defaultsFacts{Withheld: "the feature exempts images (falco)"} }),
			withDefaults("seccomp", nil),
		}}, wantStatus: metav1.ConditionFalse, wantReason: ReasonDefaultsWithheld, wantMsg: "Defaults are active for 1 features: seccomp."},
		{name: "withheld and pending: pending first", facts: reconcileFacts{MasterEnabled: true, Features: []featureFacts{
			withDefaults("readOnlyRootFilesystem", func(d *defaultsFacts) { *d = defaultsFacts{Withheld: "the feature exempts images (falco)"} }),
			withDefaults("seccomp", func(d *defaultsFacts) { d.Observed[0].Observed.ByPod = nil }),
		}}, wantStatus: metav1.ConditionFalse, wantReason: ReasonMutatorsNotReported, wantMsg: "seccomp"},
		{name: "gatekeeper unreachable", facts: reconcileFacts{MasterEnabled: true, Failed: &failure{Message: "listing CRDs: timeout"}, Features: []featureFacts{withDefaults("seccomp", nil)}},
			wantStatus: metav1.ConditionUnknown, wantReason: ReasonDefaultsNotEvaluated, wantMsg: "listing CRDs: timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := defaultsCondition(tc.facts)
			if got.Type != v1alpha1.ConditionDefaultsActive || got.Status != tc.wantStatus || got.Reason != tc.wantReason || !strings.Contains(got.Message, tc.wantMsg) {
				t.Errorf("got %+v, want %s/%s containing %q", got, tc.wantStatus, tc.wantReason, tc.wantMsg)
			}
		})
	}
}
