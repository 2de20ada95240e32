package controllers

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

func feature(name string) templates.Feature {
	f, ok := templates.FeatureByName(name)
	if !ok {
		panic(name)
	}
	return f
}

// enforcedFacts are the facts of a feature that Gatekeeper fully enforces.
func enforcedFacts(name string) featureFacts {
	return featureFacts{
		Feature: feature(name), Enabled: true, EnforcementAction: v1alpha1.EnforcementDeny,
		Template:           templateObservation{Exists: true, Created: true},
		ConstraintCRDReady: true,
		// A constraint of its own, as for a feature with its own excludedNamespaces.
		ConstraintName: feature(name).ObjectName(), ConstraintFeatures: []string{name},
		Constraint: constraintObservation{Exists: true, Generation: 2, ByPod: []constraintPodStatus{
			{ID: "gk-audit", Enforced: true, ObservedGeneration: 2},
			{ID: "gk-webhook", Enforced: true, ObservedGeneration: 2},
		}},
	}
}

// sharedFacts are the facts of an enforced feature whose constraint, psc-deny, it shares with
// privilegedContainers, capabilities and seccomp: the constraint has total violations, of which
// Gatekeeper lists one per message feature given.
func sharedFacts(name string, total int64, listed ...string) featureFacts {
	f := enforcedFacts(name)
	f.ConstraintName = "psc-deny"
	f.ConstraintFeatures = []string{"privilegedContainers", "capabilities", "seccomp"}
	f.Constraint.TotalViolations = total
	for i, l := range listed {
		f.Constraint.Violations = append(f.Constraint.Violations, v1alpha1.Violation{Kind: "Pod", Name: fmt.Sprintf("p%d", i), Message: "psc/" + l + ": bad"})
	}
	return f
}

func TestFeatureViolations(t *testing.T) {
	many := make([]string, 7)
	for i := range many {
		many[i] = "capabilities"
	}
	for _, tc := range []struct {
		name        string
		facts       featureFacts
		wantTotal   int64
		wantExact   bool
		wantSamples int
	}{
		{"alone: the constraint's total, whatever is listed", func() featureFacts {
			f := enforcedFacts("capabilities")
			f.Constraint.TotalViolations = 40
			f.Constraint.Violations = sharedFacts("capabilities", 0, many...).Constraint.Violations
			return f
		}(), 40, true, v1alpha1.MaxSampleViolations},
		{"shared, all listed: exact, by message", sharedFacts("capabilities", 4, "privilegedContainers", "capabilities", "seccomp", "capabilities"), 2, true, 2},
		{"shared, none of its own", sharedFacts("seccomp", 2, "privilegedContainers", "capabilities"), 0, true, 0},
		{"shared, more than listed: a lower bound", sharedFacts("capabilities", 30, append([]string{"seccomp"}, many...)...), 7, false, v1alpha1.MaxSampleViolations},
		{"a message of no feature counts for none", sharedFacts("capabilities", 1, "nosuchfeature"), 0, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := featureViolations(tc.facts)
			if got.Total != tc.wantTotal || got.Exact != tc.wantExact || len(got.Samples) != tc.wantSamples {
				t.Errorf("got total %d exact %v with %d samples, want %d %v %d", got.Total, got.Exact, len(got.Samples), tc.wantTotal, tc.wantExact, tc.wantSamples)
			}
			for _, v := range got.Samples {
				if f := templates.FeatureOfMessage(v.Message); f != tc.facts.Feature.Name && len(tc.facts.ConstraintFeatures) > 1 {
					t.Errorf("sample of feature %q shown for %s", f, tc.facts.Feature.Name)
				}
			}
			st := featureStatus(tc.facts, true)
			if st.TotalViolations != got.Total || len(st.Violations) != len(got.Samples) {
				t.Errorf("status shows %d violations with %d samples, want %d with %d", st.TotalViolations, len(st.Violations), got.Total, len(got.Samples))
			}
			if lowerBound := strings.Contains(st.Message, "at least"); lowerBound == tc.wantExact {
				t.Errorf("message %q: says a lower bound %v, want %v", st.Message, lowerBound, !tc.wantExact)
			}
		})
	}
}

func TestFeatureState(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mutate    func(*featureFacts)
		wantState v1alpha1.FeatureState
		wantMsg   string
	}{
		{"enforced", func(*featureFacts) {}, v1alpha1.FeatureEnforced, "Enforced (deny) by 2 Gatekeeper pods; 0 audit violations."},
		{"apply error", func(f *featureFacts) { f.ApplyError = "Applying the template failed: forbidden" }, v1alpha1.FeatureError, "Applying the template failed: forbidden"},
		{"template errors win over created", func(f *featureFacts) { f.Template.Errors = []string{"rego_parse_error: x"} }, v1alpha1.FeatureError, "Gatekeeper reported template errors: rego_parse_error: x"},
		{"waiting for gatekeeper", func(f *featureFacts) { f.Waiting = "Waiting to apply the constraint: no matches for kind" }, v1alpha1.FeaturePending, "Waiting to apply the constraint: no matches for kind"},
		{"template not applied", func(f *featureFacts) { f.Template = templateObservation{} }, v1alpha1.FeaturePending, "The ConstraintTemplate is not applied yet."},
		{"template not created", func(f *featureFacts) { f.Template.Created = false }, v1alpha1.FeaturePending, "Waiting for Gatekeeper to create the ConstraintTemplate."},
		{"constraint CRD missing", func(f *featureFacts) { f.ConstraintCRDReady = false }, v1alpha1.FeaturePending, "Waiting for Gatekeeper to establish the constraint CRD."},
		{"constraint missing", func(f *featureFacts) { f.Constraint = constraintObservation{} }, v1alpha1.FeaturePending, "The constraint is not applied yet."},
		{"no pod reported yet", func(f *featureFacts) { f.Constraint.ByPod = nil }, v1alpha1.FeaturePending, "Waiting for Gatekeeper to report the constraint's status."},
		{"one pod not enforcing", func(f *featureFacts) { f.Constraint.ByPod[1].Enforced = false }, v1alpha1.FeaturePending, "Waiting for 1 of 2 Gatekeeper pods to enforce generation 2 of the constraint."},
		{"one pod at an old generation", func(f *featureFacts) { f.Constraint.ByPod[0].ObservedGeneration = 1 }, v1alpha1.FeaturePending, "Waiting for 1 of 2 Gatekeeper pods to enforce generation 2 of the constraint."},
		{"constraint errors", func(f *featureFacts) { f.Constraint.ByPod[0].Errors = []string{"bad parameters"} }, v1alpha1.FeatureError, "Gatekeeper reported constraint errors: bad parameters"},
		{"violations counted", func(f *featureFacts) {
			f.Constraint.TotalViolations = 4
			f.EnforcementAction = v1alpha1.EnforcementDryRun
		}, v1alpha1.FeatureEnforced, "Enforced (dryrun) by 2 Gatekeeper pods; 4 audit violations."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := enforcedFacts("capabilities")
			tc.mutate(&f)
			state, msg := featureState(f)
			if state != tc.wantState || msg != tc.wantMsg {
				t.Errorf("got %s %q, want %s %q", state, msg, tc.wantState, tc.wantMsg)
			}
		})
	}
}

func TestFeatureStatusDisabled(t *testing.T) {
	for _, tc := range []struct {
		master  bool
		wantMsg string
	}{
		{true, "The feature is disabled."},
		{false, "The master switch spec.enabled is off."},
	} {
		st := featureStatus(featureFacts{Feature: feature("seccomp")}, tc.master)
		if st.State != v1alpha1.FeatureDisabled || st.Message != tc.wantMsg || st.TemplateName != "" {
			t.Errorf("master %v: got %+v", tc.master, st)
		}
	}
}

func TestDeriveStatus(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	earlier := metav1.NewTime(now.Add(-time.Hour))
	withViolations := enforcedFacts("privilegedContainers")
	withViolations.Constraint.TotalViolations = 3
	pending := enforcedFacts("hostNamespaces")
	pending.Template.Created = false
	broken := enforcedFacts("sysctls")
	broken.Template.Errors = []string{"compile error"}

	for _, tc := range []struct {
		name       string
		facts      reconcileFacts
		prev       v1alpha1.PodSecurityConstraintsStatus
		wantReady  metav1.ConditionStatus
		wantReason string
		wantMsg    string // substring
		wantConds  []string
		wantOG     int64
		wantCounts [3]int64 // enabled, enforced, violations
	}{
		{
			name:      "all enforced",
			facts:     reconcileFacts{Generation: 3, MasterEnabled: true, Features: []featureFacts{withViolations, enforcedFacts("capabilities"), {Feature: feature("seccomp")}}},
			wantReady: metav1.ConditionTrue, wantReason: ReasonEnforced, wantMsg: "All 2 enabled features are enforced.",
			wantConds: []string{"Ready"}, wantOG: 3, wantCounts: [3]int64{2, 2, 3},
		},
		{
			name:      "pending feature is progressing and keeps the old generation",
			facts:     reconcileFacts{Generation: 3, MasterEnabled: true, Features: []featureFacts{withViolations, pending}},
			prev:      v1alpha1.PodSecurityConstraintsStatus{ObservedGeneration: 2},
			wantReady: metav1.ConditionFalse, wantReason: ReasonProgressing, wantMsg: "1 of 2 enabled features: hostNamespaces",
			wantConds: []string{"Ready", "Reconciling"}, wantOG: 2, wantCounts: [3]int64{2, 1, 3},
		},
		{
			name:      "feature error wins over pending and is final for the generation",
			facts:     reconcileFacts{Generation: 3, MasterEnabled: true, Features: []featureFacts{pending, broken}},
			wantReady: metav1.ConditionFalse, wantReason: ReasonFeatureError, wantMsg: "sysctls: Gatekeeper reported template errors: compile error",
			wantConds: []string{"Ready", "Stalled"}, wantOG: 3, wantCounts: [3]int64{2, 0, 0},
		},
		{
			name: "features sharing a constraint count its violations once",
			facts: reconcileFacts{Generation: 3, MasterEnabled: true, Features: []featureFacts{
				sharedFacts("privilegedContainers", 30, "privilegedContainers", "capabilities", "capabilities"),
				sharedFacts("capabilities", 30, "privilegedContainers", "capabilities", "capabilities"),
				func() featureFacts { f := enforcedFacts("sysctls"); f.Constraint.TotalViolations = 3; return f }(),
			}},
			wantReady: metav1.ConditionTrue, wantReason: ReasonEnforced, wantMsg: "All 3 enabled features are enforced.",
			wantConds: []string{"Ready"}, wantOG: 3, wantCounts: [3]int64{3, 3, 33},
		},
		{
			name:      "gatekeeper missing",
			facts:     reconcileFacts{Generation: 1, MasterEnabled: true, Failed: &failure{ReasonGatekeeperNotInstalled, "Gatekeeper is not installed"}, Features: []featureFacts{{Feature: feature("seccomp"), Enabled: true}}},
			wantReady: metav1.ConditionFalse, wantReason: ReasonGatekeeperNotInstalled, wantMsg: "Gatekeeper is not installed",
			wantConds: []string{"Ready"}, wantOG: 0, wantCounts: [3]int64{1, 0, 0},
		},
		{
			// The reconcile stopped before rendering, with every feature still "not enabled".
			name: "spec not validated (API trouble) keeps the previous feature status and is retried, not stalled",
			facts: reconcileFacts{Generation: 4, MasterEnabled: true, Unchecked: true,
				Failed:   &failure{ReasonSpecCheckFailed, "asking the API server to validate the spec: unavailable"},
				Features: []featureFacts{{Feature: feature("capabilities")}}},
			prev: v1alpha1.PodSecurityConstraintsStatus{ObservedGeneration: 3, EnabledFeatures: 1, EnforcedFeatures: 1,
				Features: []v1alpha1.FeatureStatus{{Name: "capabilities", State: v1alpha1.FeatureEnforced}}},
			wantReady: metav1.ConditionFalse, wantReason: ReasonSpecCheckFailed, wantMsg: "unavailable",
			wantConds: []string{"Ready"}, wantOG: 3, wantCounts: [3]int64{1, 1, 0},
		},
		{
			name:  "invalid spec stalls and keeps the previous feature status",
			facts: reconcileFacts{Generation: 4, MasterEnabled: true, Stalled: &failure{ReasonInvalidSpec, "spec.x: bad"}},
			prev: v1alpha1.PodSecurityConstraintsStatus{ObservedGeneration: 3, EnabledFeatures: 1, EnforcedFeatures: 1,
				Features: []v1alpha1.FeatureStatus{{Name: "capabilities", State: v1alpha1.FeatureEnforced}}},
			wantReady: metav1.ConditionFalse, wantReason: ReasonInvalidSpec, wantMsg: "spec.x: bad",
			wantConds: []string{"Ready", "Stalled"}, wantOG: 4, wantCounts: [3]int64{1, 1, 0},
		},
		{
			name:      "master switch off",
			facts:     reconcileFacts{Generation: 5, MasterEnabled: false, Features: []featureFacts{{Feature: feature("seccomp")}}},
			prev:      v1alpha1.PodSecurityConstraintsStatus{Conditions: []metav1.Condition{{Type: "Reconciling", Status: "True", Reason: "Progressing", LastTransitionTime: earlier}}},
			wantReady: metav1.ConditionTrue, wantReason: ReasonMasterSwitchOff, wantMsg: "no policies are generated",
			wantConds: []string{"Ready"}, wantOG: 5, wantCounts: [3]int64{0, 0, 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := deriveStatus(tc.facts, tc.prev, now)
			ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
			if ready == nil || ready.Status != tc.wantReady || ready.Reason != tc.wantReason || !strings.Contains(ready.Message, tc.wantMsg) {
				t.Fatalf("Ready = %+v, want %s/%s containing %q", ready, tc.wantReady, tc.wantReason, tc.wantMsg)
			}
			if ready.ObservedGeneration != tc.facts.Generation {
				t.Errorf("Ready.observedGeneration %d, want %d", ready.ObservedGeneration, tc.facts.Generation)
			}
			var types []string
			for _, c := range st.Conditions {
				if c.Type == v1alpha1.ConditionWorkloadsChecked || c.Type == v1alpha1.ConditionDefaultsActive || c.Type == v1alpha1.ConditionAPIServerEnforced {
					continue // not kstatus conditions; see TestWorkloadsCondition, TestDefaultsCondition and TestAPIServerConditionAndReady
				}
				types = append(types, c.Type)
				if c.Type != v1alpha1.ConditionReady && c.Status != metav1.ConditionTrue {
					t.Errorf("%s present while %s: kstatus keeps it only while true", c.Type, c.Status)
				}
			}
			if strings.Join(types, ",") != strings.Join(tc.wantConds, ",") {
				t.Errorf("conditions %v, want %v", types, tc.wantConds)
			}
			if st.ObservedGeneration != tc.wantOG {
				t.Errorf("observedGeneration %d, want %d", st.ObservedGeneration, tc.wantOG)
			}
			got := [3]int64{int64(st.EnabledFeatures), int64(st.EnforcedFeatures), st.TotalViolations}
			if got != tc.wantCounts {
				t.Errorf("enabled/enforced/violations %v, want %v", got, tc.wantCounts)
			}
		})
	}
}

func TestDeriveStatusKeepsTransitionTime(t *testing.T) {
	earlier := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	facts := reconcileFacts{Generation: 1, MasterEnabled: true, Features: []featureFacts{enforcedFacts("capabilities")}}
	first := deriveStatus(facts, v1alpha1.PodSecurityConstraintsStatus{}, earlier)
	second := deriveStatus(facts, first, metav1.NewTime(earlier.Add(time.Hour)))
	if got := meta.FindStatusCondition(second.Conditions, v1alpha1.ConditionReady).LastTransitionTime; !got.Equal(&earlier) {
		t.Errorf("lastTransitionTime moved to %v without a transition", got)
	}
}

func TestObserveGatekeeperStatus(t *testing.T) {
	tmpl := &unstructured.Unstructured{Object: map[string]interface{}{
		"status": map[string]interface{}{
			"created": true,
			"byPod": []interface{}{
				map[string]interface{}{"id": "b", "errors": []interface{}{map[string]interface{}{"code": "ingest_error", "message": "bad rego"}}},
				map[string]interface{}{"id": "a", "errors": []interface{}{map[string]interface{}{"code": "ingest_error", "message": "bad rego"}}},
			},
		},
	}}
	obs := observeTemplate(tmpl)
	if !obs.Exists || !obs.Created || len(obs.Errors) != 1 || obs.Errors[0] != "ingest_error: bad rego" {
		t.Errorf("template observation %+v", obs)
	}
	if observeTemplate(nil).Exists {
		t.Error("a missing template observed as existing")
	}

	var violations []interface{}
	for i := 0; i < 8; i++ {
		violations = append(violations, map[string]interface{}{"kind": "Pod", "namespace": "ns", "name": "p", "message": "m", "enforcementAction": "dryrun"})
	}
	con := &unstructured.Unstructured{Object: map[string]interface{}{
		"metadata": map[string]interface{}{"generation": int64(3)},
		"status": map[string]interface{}{
			"auditTimestamp":  "2026-11-22T10:00:00Z",
			"totalViolations": int64(8),
			"violations":      violations,
			"byPod": []interface{}{
				map[string]interface{}{"id": "z", "enforced": true, "observedGeneration": int64(3)},
				map[string]interface{}{"id": "y", "enforced": false, "observedGeneration": int64(2)},
			},
		},
	}}
	c := observeConstraint(con)
	// Every listed violation is kept: the constraint's features share them.
	if c.Generation != 3 || c.TotalViolations != 8 || len(c.Violations) != 8 || c.AuditTimestamp == nil {
		t.Errorf("constraint observation %+v", c)
	}
	if len(c.ByPod) != 2 || c.ByPod[0].ID != "y" || c.ByPod[0].Enforced || !c.ByPod[1].Enforced {
		t.Errorf("byPod %+v, want sorted by id with enforcement", c.ByPod)
	}
}

func TestUpToDate(t *testing.T) {
	desired := &unstructured.Unstructured{Object: map[string]interface{}{
		"metadata": map[string]interface{}{"name": "x", "labels": map[string]interface{}{"a": "b"}},
		"spec":     map[string]interface{}{"n": int64(3), "list": []interface{}{"x", "y"}, "m": map[string]interface{}{"k": true}},
	}}
	for _, tc := range []struct {
		name string
		live map[string]interface{}
		want bool
	}{
		{"same with extra fields and float numbers", map[string]interface{}{
			"metadata": map[string]interface{}{"name": "x", "labels": map[string]interface{}{"a": "b", "other": "c"}},
			"spec":     map[string]interface{}{"n": float64(3), "list": []interface{}{"x", "y"}, "m": map[string]interface{}{"k": true, "z": 1}},
			"status":   map[string]interface{}{"created": true},
		}, true},
		{"changed scalar", map[string]interface{}{
			"metadata": map[string]interface{}{"name": "x", "labels": map[string]interface{}{"a": "b"}},
			"spec":     map[string]interface{}{"n": int64(4), "list": []interface{}{"x", "y"}, "m": map[string]interface{}{"k": true}},
		}, false},
		{"longer list", map[string]interface{}{
			"metadata": map[string]interface{}{"name": "x", "labels": map[string]interface{}{"a": "b"}},
			"spec":     map[string]interface{}{"n": int64(3), "list": []interface{}{"x", "y", "z"}, "m": map[string]interface{}{"k": true}},
		}, false},
		{"label removed", map[string]interface{}{
			"metadata": map[string]interface{}{"name": "x"},
			"spec":     map[string]interface{}{"n": int64(3), "list": []interface{}{"x", "y"}, "m": map[string]interface{}{"k": true}},
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := upToDate(desired, &unstructured.Unstructured{Object: tc.live}); got != tc.want {
				t.Errorf("upToDate = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestUpToDateConstraintParameters: a constraint's parameters are compared whole, so that a
// feature taken out of a constraint (switched off, or moved to another) is taken out of the
// live one.
func TestUpToDateConstraintParameters(t *testing.T) {
	constraint := func(features map[string]interface{}, extraSpec map[string]interface{}) *unstructured.Unstructured {
		spec := map[string]interface{}{"enforcementAction": "scoped", "parameters": map[string]interface{}{"features": features}}
		for k, v := range extraSpec {
			spec[k] = v
		}
		u := &unstructured.Unstructured{Object: map[string]interface{}{"spec": spec}}
		u.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
		u.SetName("psc-deny")
		return u
	}
	desired := constraint(map[string]interface{}{"capabilities": map[string]interface{}{"requiredDropCapabilities": []interface{}{"ALL"}}}, nil)
	for _, tc := range []struct {
		name string
		live *unstructured.Unstructured
		want bool
	}{
		{"same, with fields others set outside parameters", constraint(map[string]interface{}{"capabilities": map[string]interface{}{"requiredDropCapabilities": []interface{}{"ALL"}}},
			map[string]interface{}{"match": map[string]interface{}{"kinds": []interface{}{}}}), true},
		{"a feature left over", constraint(map[string]interface{}{"capabilities": map[string]interface{}{"requiredDropCapabilities": []interface{}{"ALL"}}, "sysctls": map[string]interface{}{}}, nil), false},
		{"a parameter left over", constraint(map[string]interface{}{"capabilities": map[string]interface{}{"requiredDropCapabilities": []interface{}{"ALL"}, "allowedCapabilities": []interface{}{"X"}}}, nil), false},
		{"a feature missing", constraint(map[string]interface{}{}, nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := upToDate(desired, tc.live); got != tc.want {
				t.Errorf("upToDate = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestAppliedLabels: the Applied event names the features whose entry of a changed constraint
// changed, and those a constraint no longer enforces because they were switched off.
func TestAppliedLabels(t *testing.T) {
	con := func(name string, features ...string) templates.Item {
		entries := map[string]interface{}{}
		for _, f := range features {
			entries[f] = map[string]interface{}{}
		}
		u := &unstructured.Unstructured{Object: map[string]interface{}{"spec": map[string]interface{}{
			"enforcementAction": "scoped", "parameters": map[string]interface{}{"features": entries},
		}}}
		u.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
		u.SetName(name)
		return templates.Item{Role: templates.RoleConstraint, Features: features, Object: u}
	}
	enabled := func(names ...string) []featureFacts {
		var out []featureFacts
		for _, f := range templates.Features() {
			out = append(out, featureFacts{Feature: f, Enabled: slices.Contains(names, f.Name)})
		}
		return out
	}
	changedParam := con("psc-deny", "privilegedContainers", "capabilities")
	changedParam.Object.Object["spec"].(map[string]interface{})["parameters"].(map[string]interface{})["features"].(map[string]interface{})["capabilities"] =
		map[string]interface{}{"requiredDropCapabilities": []interface{}{"ALL"}}
	for _, tc := range []struct {
		name     string
		template bool
		cons     []templates.Item
		results  []constraintApply
		features []featureFacts
		want     []string
	}{
		{"new constraint: all its features", true, []templates.Item{con("psc-deny", "privilegedContainers", "capabilities")},
			[]constraintApply{{changed: true}}, enabled("privilegedContainers", "capabilities"),
			[]string{policyTemplateLabel, "privilegedContainers", "capabilities"}},
		{"a feature added", false, []templates.Item{con("psc-deny", "privilegedContainers", "capabilities")},
			[]constraintApply{{changed: true, prev: con("psc-deny", "privilegedContainers").Object}}, enabled("privilegedContainers", "capabilities"),
			[]string{"capabilities"}},
		{"a parameter changed", false, []templates.Item{changedParam},
			[]constraintApply{{changed: true, prev: con("psc-deny", "privilegedContainers", "capabilities").Object}}, enabled("privilegedContainers", "capabilities"),
			[]string{"capabilities"}},
		{"a feature switched off", false, []templates.Item{con("psc-deny", "privilegedContainers")},
			[]constraintApply{{changed: true, prev: con("psc-deny", "privilegedContainers", "sysctls").Object}}, enabled("privilegedContainers"),
			[]string{"sysctls (off)"}},
		{"a feature moved to another constraint", false, []templates.Item{con("psc-deny", "privilegedContainers"), con("psc-warn", "sysctls")},
			[]constraintApply{{changed: true, prev: con("psc-deny", "privilegedContainers", "sysctls").Object}, {changed: true}}, enabled("privilegedContainers", "sysctls"),
			[]string{"sysctls"}},
		{"a repaired constraint: all its features", false, []templates.Item{con("psc-deny", "privilegedContainers", "sysctls")},
			[]constraintApply{{changed: true, prev: con("psc-deny", "privilegedContainers", "sysctls").Object}}, enabled("privilegedContainers", "sysctls"),
			[]string{"privilegedContainers", "sysctls"}},
		{"unchanged constraints: nothing", false, []templates.Item{con("psc-deny", "privilegedContainers")},
			[]constraintApply{{}}, enabled("privilegedContainers"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := appliedLabels(tc.template, tc.cons, tc.results, tc.features); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// expansionFacts is an ExpansionTemplate that every Gatekeeper pod loaded.
func expansionFacts(name string) objectFacts {
	return objectFacts{Role: templates.RoleExpansion, Kind: "ExpansionTemplate", Name: name, CRD: templates.ExpansionCRDName,
		Observed: gatekeeperObjectObservation{Exists: true, Generation: 1, ByPod: []constraintPodStatus{
			{ID: "gk-audit", ObservedGeneration: 1}, {ID: "gk-webhook", ObservedGeneration: 1},
		}}}
}

func TestWorkloadsCondition(t *testing.T) {
	loaded := func() reconcileFacts {
		return reconcileFacts{Generation: 3, MasterEnabled: true, Features: []featureFacts{enforcedFacts("capabilities")},
			Workloads: workloadsFacts{Enabled: true, Kinds: 2},
			Objects:   []objectFacts{expansionFacts("psc-deployment"), expansionFacts("psc-job")}}
	}
	for _, tc := range []struct {
		name       string
		mutate     func(*reconcileFacts)
		wantStatus metav1.ConditionStatus
		wantReason string
		wantMsg    string
	}{
		{"checked", func(*reconcileFacts) {}, metav1.ConditionTrue, ReasonWorkloadsChecked, "2 workload kinds are judged at apply time as the Pods they would create, by 1 enabled features."},
		{"master switch off", func(f *reconcileFacts) { f.MasterEnabled = false }, metav1.ConditionFalse, ReasonMasterSwitchOff, "master switch"},
		{"workloads off", func(f *reconcileFacts) { f.Workloads.Enabled = false; f.Objects = nil }, metav1.ConditionFalse, ReasonWorkloadsDisabled, "spec.workloads.enabled is false"},
		{"no feature", func(f *reconcileFacts) { f.Features = []featureFacts{{Feature: feature("seccomp")}}; f.Objects = nil }, metav1.ConditionFalse, ReasonNoFeatureEnabled, "No feature is enabled"},
		{"gatekeeper missing", func(f *reconcileFacts) {
			f.Failed = &failure{Reason: ReasonGatekeeperNotInstalled, Message: "Gatekeeper is not installed"}
			f.Objects = nil
		}, metav1.ConditionUnknown, ReasonWorkloadsNotEvaluated, "Gatekeeper is not installed"},
		{"expansion CRD absent", func(f *reconcileFacts) {
			for i := range f.Objects {
				f.Objects[i].CRDMissing, f.Objects[i].Observed = true, gatekeeperObjectObservation{}
			}
		}, metav1.ConditionFalse, ReasonExpansionUnavailable, "Gatekeeper does not serve ExpansionTemplates (the CRD expansiontemplate.expansion.gatekeeper.sh does not exist"},
		{"apply failed", func(f *reconcileFacts) { f.Objects[1].ApplyError = "forbidden" }, metav1.ConditionFalse, ReasonExpansionApplyFailed, "Applying 1 of 2 ExpansionTemplates failed: psc-job: forbidden."},
		{"gatekeeper errors", func(f *reconcileFacts) { f.Objects[0].Observed.ByPod[1].Errors = []string{"cycle detected"} }, metav1.ConditionFalse, ReasonExpansionError, "psc-deployment: cycle detected"},
		{"not reported (expansion disabled in Gatekeeper)", func(f *reconcileFacts) { f.Objects[0].Observed.ByPod = nil }, metav1.ConditionFalse, ReasonExpansionNotReported, "Waiting for Gatekeeper to load 1 of 2 ExpansionTemplates (psc-deployment). If this persists, Gatekeeper runs with --enable-generator-resource-expansion=false"},
		{"old generation", func(f *reconcileFacts) { f.Objects[1].Observed.Generation = 2 }, metav1.ConditionFalse, ReasonExpansionNotReported, "(psc-job)"},
		{"other roles ignored", func(f *reconcileFacts) {
			f.Objects = append(f.Objects, objectFacts{Role: templates.RoleMutator, Name: "m", CRDMissing: true})
		}, metav1.ConditionTrue, ReasonWorkloadsChecked, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			facts := loaded()
			tc.mutate(&facts)
			st := deriveStatus(facts, v1alpha1.PodSecurityConstraintsStatus{}, metav1.Now())
			c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionWorkloadsChecked)
			if c == nil || c.Status != tc.wantStatus || c.Reason != tc.wantReason || !strings.Contains(c.Message, tc.wantMsg) {
				t.Fatalf("WorkloadsChecked = %+v, want %s/%s containing %q", c, tc.wantStatus, tc.wantReason, tc.wantMsg)
			}
			if c.ObservedGeneration != facts.Generation {
				t.Errorf("observedGeneration %d, want %d", c.ObservedGeneration, facts.Generation)
			}
			if tc.wantStatus == metav1.ConditionFalse && tc.wantReason != ReasonMasterSwitchOff && tc.wantReason != ReasonNoFeatureEnabled {
				if !strings.Contains(c.Message, "Pods are still checked") {
					t.Errorf("message %q does not say that Pods stay checked", c.Message)
				}
			}
			// Workloads never change Ready.
			want := deriveStatus(reconcileFacts{Generation: facts.Generation, MasterEnabled: facts.MasterEnabled, Features: facts.Features, Failed: facts.Failed},
				v1alpha1.PodSecurityConstraintsStatus{}, metav1.Now())
			if got, w := readyOf(st), readyOf(want); got.Status != w.Status || got.Reason != w.Reason {
				t.Errorf("Ready %s/%s, want %s/%s as without workloads", got.Status, got.Reason, w.Status, w.Reason)
			}
		})
	}
	// A stalled spec keeps the previous condition.
	prev := deriveStatus(loaded(), v1alpha1.PodSecurityConstraintsStatus{}, metav1.Now())
	stalled := loaded()
	stalled.Stalled = &failure{Reason: ReasonInvalidSpec, Message: "bad"}
	st := deriveStatus(stalled, prev, metav1.Now())
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionWorkloadsChecked); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("stalled spec dropped the previous WorkloadsChecked: %+v", c)
	}
}

// The profile in force is reported as the facts say, and a stalled spec keeps the last one.
func TestDeriveStatusProfile(t *testing.T) {
	now := metav1.NewTime(time.Unix(1700000000, 0))
	facts := reconcileFacts{Generation: 3, MasterEnabled: true, Profile: "restricted", ProfileVersion: "v1.35",
		Features: []featureFacts{enforcedFacts("privilegedContainers")}}
	st := deriveStatus(facts, v1alpha1.PodSecurityConstraintsStatus{}, now)
	if st.Profile != "restricted" || st.ProfileVersion != "v1.35" {
		t.Errorf("status profile %q %q, want restricted v1.35", st.Profile, st.ProfileVersion)
	}
	stalled := reconcileFacts{Generation: 4, MasterEnabled: true, Profile: "baseline", ProfileVersion: "v1.30",
		Stalled: &failure{Reason: ReasonInvalidSpec, Message: "bad"}}
	st = deriveStatus(stalled, st, now)
	if st.Profile != "restricted" || st.ProfileVersion != "v1.35" {
		t.Errorf("a stalled spec changed the profile shown to %q %q", st.Profile, st.ProfileVersion)
	}
	facts.Profile, facts.ProfileVersion = "", ""
	if st = deriveStatus(facts, st, now); st.Profile != "" || st.ProfileVersion != "" {
		t.Errorf("profile %q %q shown without one in force", st.Profile, st.ProfileVersion)
	}
}

// TestRenderedObjectsUpToDateAfterRoundTrip: every object rendered from the full sample is up to
// date with itself as the API server returns it (JSON numbers, lists and maps), so a steady
// state applies nothing; the constraints' parameters are compared whole (sameValue).
func TestRenderedObjectsUpToDateAfterRoundTrip(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "config", "samples", "policy_v1alpha1_podsecurityconstraints_full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	psc := &v1alpha1.PodSecurityConstraints{}
	if err := yaml.UnmarshalStrict(data, psc); err != nil {
		t.Fatal(err)
	}
	inv, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Items(templates.RoleConstraint)) == 0 {
		t.Fatal("the full sample renders no constraint")
	}
	for _, obj := range inv.Objects() {
		raw, err := obj.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		live := &unstructured.Unstructured{}
		if err := live.UnmarshalJSON(raw); err != nil {
			t.Fatal(err)
		}
		if !upToDate(obj, live) {
			t.Errorf("%s %s is not up to date with itself after a JSON round trip", obj.GetKind(), obj.GetName())
		}
	}
}
