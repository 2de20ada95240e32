package controllers

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// recordEvents emits events only for changes and failures: objects applied or pruned, Ready
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
