package controllers

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestAppliedEventsAreOnePerRollout(t *testing.T) {
	type step struct {
		uid     types.UID
		gen     int64
		applied []string
		done    bool
		want    []string
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"templates then constraints, one event at the end", []step{
			{"a", 1, []string{"x", "y"}, false, nil},
			{"a", 1, []string{"x"}, false, nil},
			{"a", 1, []string{"y"}, true, []string{"x", "y"}},
			{"a", 1, nil, true, nil},
		}},
		{"drift repair at steady state reports at once", []step{
			{"a", 1, []string{"x"}, true, []string{"x"}},
			{"a", 1, []string{"x"}, true, []string{"x"}},
		}},
		{"a new generation drops what the old one held back", []step{
			{"a", 1, []string{"x"}, false, nil},
			{"a", 2, []string{"y"}, true, []string{"y"}},
		}},
		{"a recreated object starts over", []step{
			{"a", 1, []string{"x"}, false, nil},
			{"b", 1, []string{"y"}, true, []string{"y"}},
		}},
		{"in reading order, whichever reconcile applied what", []step{
			{"a", 1, []string{"policy template", "expansion"}, false, nil},
			{"a", 1, []string{"sysctls", "hostNamespaces (off)", "privilegedContainers"}, true,
				[]string{"policy template", "privilegedContainers", "sysctls", "hostNamespaces (off)", "expansion"}},
		}},
		{"nothing applied, nothing reported", []step{
			{"a", 1, nil, true, nil},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a appliedEvents
			for i, s := range tc.steps {
				if got := a.collect(s.uid, s.gen, s.applied, s.done); fmt.Sprint(got) != fmt.Sprint(s.want) {
					t.Errorf("step %d: got %v, want %v", i, got, s.want)
				}
			}
		})
	}
}

func TestRolloutDone(t *testing.T) {
	applied := featureFacts{Enabled: true, Constraint: constraintObservation{Exists: true}}
	waiting := featureFacts{Enabled: true, Template: templateObservation{Exists: true}}
	failed := featureFacts{Enabled: true, ApplyError: "boom"}
	templateErr := featureFacts{Enabled: true, Template: templateObservation{Exists: true, Errors: []string{"rego"}}}
	for _, tc := range []struct {
		name  string
		facts reconcileFacts
		want  bool
	}{
		{"all constraints applied", reconcileFacts{Features: []featureFacts{applied, {Enabled: false}}}, true},
		{"a constraint waits for its CRD", reconcileFacts{Features: []featureFacts{applied, waiting}}, false},
		{"failures end the rollout", reconcileFacts{Features: []featureFacts{failed, templateErr}}, true},
		{"a stalled spec ends it", reconcileFacts{Stalled: &failure{}, Features: []featureFacts{waiting}}, true},
		{"a failed step ends it", reconcileFacts{Failed: &failure{}, Features: []featureFacts{waiting}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rolloutDone(tc.facts); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
