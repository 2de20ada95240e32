package controllers

import (
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// recordEvents emits events only for changes and failures: objects applied (one event per
// generation rolled out, see appliedEvents) or pruned, Ready
// turning false with a new reason, and recovery. The reason of a Ready event is Ready's reason.
func (r *Reconciler) recordEvents(obj *v1alpha1.PodSecurityConstraints, prev, cur *v1alpha1.PodSecurityConstraintsStatus, ch *changes) {
	if r.Recorder == nil {
		return
	}
	if ch != nil && len(ch.Applied) > 0 {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonApplied, "Apply",
			"Applied the objects of: %s", strings.Join(ch.Applied, ", "))
	}
	if ch != nil && len(ch.Pruned) > 0 {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonPruned, "Prune",
			"Pruned objects no longer wanted: %s", strings.Join(ch.Pruned, ", "))
	}
	before, after := readyOf(*prev), readyOf(*cur)
	if before.Status == after.Status && before.Reason == after.Reason && before.Message == after.Message {
		return
	}
	switch {
	case after.Status == metav1.ConditionTrue && before.Status != metav1.ConditionTrue:
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, after.Reason, "Reconcile", "%s", after.Message)
	case after.Status == metav1.ConditionFalse && after.Reason != ReasonProgressing && (before.Reason != after.Reason || before.Message != after.Message):
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, after.Reason, "Reconcile", "%s", after.Message)
	}
}

// appliedEvents holds back the Applied event while a generation is still being rolled out.
// Templates are applied in one reconcile and their constraints in the next ones, as Gatekeeper
// establishes each constraint CRD; without it, one change of the spec produced an Applied
// event per reconcile (three within two seconds for the full sample).
type appliedEvents struct {
	mu         sync.Mutex
	uid        types.UID
	generation int64
	features   []string
}

// collect adds the features applied by one reconcile and returns the features to report in
// one event: all those applied for this generation once its rollout is done, nothing before.
func (a *appliedEvents) collect(uid types.UID, generation int64, applied []string, rolloutDone bool) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.uid != uid || a.generation != generation {
		a.uid, a.generation, a.features = uid, generation, nil
	}
	for _, f := range applied {
		if !slices.Contains(a.features, f) {
			a.features = append(a.features, f)
		}
	}
	if !rolloutDone || len(a.features) == 0 {
		return nil
	}
	out := a.features
	a.features = nil
	orderApplied(out)
	return out
}

// orderApplied puts the labels of an Applied event in a reading order that does not depend on
// which reconcile applied what: the policy template, the features in API order, the features
// switched off, then the other objects (by role) as they came.
func orderApplied(labels []string) {
	rank := func(label string) int {
		if label == policyTemplateLabel {
			return 0
		}
		name, off := strings.CutSuffix(label, offSuffix)
		for i, f := range templates.Features() {
			if f.Name == name {
				if off {
					return 1 + len(templates.Features()) + i
				}
				return 1 + i
			}
		}
		return 1 + 2*len(templates.Features())
	}
	slices.SortStableFunc(labels, func(a, b string) int { return rank(a) - rank(b) })
}

// rolloutDone reports whether a reconcile has nothing left to apply for its generation: each
// enabled feature has its constraint in place or has failed, or the reconcile stopped early.
func rolloutDone(facts reconcileFacts) bool {
	if facts.Stalled != nil || facts.Failed != nil {
		return true
	}
	for _, f := range facts.Features {
		if f.Enabled && !f.Constraint.Exists && f.ApplyError == "" && len(f.Template.Errors) == 0 {
			return false
		}
	}
	return true
}
