package controllers

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// templateObservation is what Gatekeeper reports about a ConstraintTemplate.
type templateObservation struct {
	Exists     bool
	Generation int64
	Created    bool
	// Errors are the compile errors Gatekeeper's pods reported, one line each.
	Errors []string
	// VAP is each pod's report of generating the template's ValidatingAdmissionPolicy
	// (status.byPod[].vapGenerationStatus), from the pods that made one.
	VAP []vapGeneration
}

// constraintObservation is what Gatekeeper reports about a constraint.
type constraintObservation struct {
	Exists     bool
	Generation int64
	ByPod      []constraintPodStatus
	// Audit results: the constraint's total, and the violations Gatekeeper lists (at most
	// --constraint-violations-limit, 20 by default), of all its features.
	TotalViolations int64
	AuditTimestamp  *metav1.Time
	Violations      []v1alpha1.Violation
}

type constraintPodStatus struct {
	ID                 string
	Enforced           bool
	ObservedGeneration int64
	Errors             []string
	// VAP is the pod's report for the enforcement point vap.k8s.io (the binding Gatekeeper
	// generates), from status.byPod[].enforcementPointsStatus; empty when it made none.
	VAP vapGeneration
}

// observeTemplate reads status.created and status.byPod[].errors of a ConstraintTemplate.
func observeTemplate(u *unstructured.Unstructured) templateObservation {
	if u == nil {
		return templateObservation{}
	}
	obs := templateObservation{Exists: true, Generation: u.GetGeneration()}
	obs.Created, _, _ = unstructured.NestedBool(u.Object, "status", "created")
	byPod, _, _ := unstructured.NestedSlice(u.Object, "status", "byPod")
	for _, p := range byPod {
		pod, ok := p.(map[string]interface{})
		if !ok {
			continue
		}
		obs.Errors = append(obs.Errors, gatekeeperErrors(pod)...)
		if g, ok := pod["vapGenerationStatus"].(map[string]interface{}); ok {
			gen, _, _ := unstructured.NestedInt64(g, "observedGeneration")
			obs.VAP = append(obs.VAP, vapGeneration{State: str(g, "state"), Message: str(g, "warning"), ObservedGeneration: gen})
		}
	}
	obs.Errors = uniqueSorted(obs.Errors)
	return obs
}

// observeConstraint reads the enforcement and audit status of a constraint: every violation
// Gatekeeper lists, which the constraint's features share (featureViolations).
func observeConstraint(u *unstructured.Unstructured) constraintObservation {
	if u == nil {
		return constraintObservation{}
	}
	obs := constraintObservation{Exists: true, Generation: u.GetGeneration(), ByPod: observeByPod(u)}

	obs.TotalViolations, _, _ = unstructured.NestedInt64(u.Object, "status", "totalViolations")
	if ts, ok, _ := unstructured.NestedString(u.Object, "status", "auditTimestamp"); ok {
		if t, err := time.Parse(time.RFC3339, ts); err == nil {
			mt := metav1.NewTime(t)
			obs.AuditTimestamp = &mt
		}
	}
	violations, _, _ := unstructured.NestedSlice(u.Object, "status", "violations")
	for _, v := range violations {
		m, ok := v.(map[string]interface{})
		if !ok {
			continue
		}
		obs.Violations = append(obs.Violations, v1alpha1.Violation{
			Kind:              str(m, "kind"),
			Namespace:         str(m, "namespace"),
			Name:              str(m, "name"),
			Message:           str(m, "message"),
			EnforcementAction: violationAction(m),
		})
	}
	return obs
}

// violationAction is an audit result's action; for a scoped constraint (all of ours) the
// actions Gatekeeper lists in enforcementActions.
func violationAction(m map[string]interface{}) string {
	action := str(m, "enforcementAction")
	if action != "scoped" {
		return action
	}
	actions, _, _ := unstructured.NestedStringSlice(m, "enforcementActions")
	if len(actions) == 0 {
		return action
	}
	return strings.Join(uniqueSorted(actions), ",")
}

func gatekeeperErrors(pod map[string]interface{}) []string {
	errs, _, _ := unstructured.NestedSlice(pod, "errors")
	var out []string
	for _, e := range errs {
		m, ok := e.(map[string]interface{})
		if !ok {
			continue
		}
		msg := str(m, "message")
		if code := str(m, "code"); code != "" {
			msg = fmt.Sprintf("%s: %s", code, msg)
		}
		out = append(out, msg)
	}
	return out
}

func str(m map[string]interface{}, key string) string {
	s, _ := m[key].(string)
	return s
}

func uniqueSorted(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	slices.Sort(in)
	return slices.Compact(in)
}

// gatekeeperObjectObservation is what Gatekeeper's pods report about an object that is neither
// a template nor a constraint (an ExpansionTemplate): each pod that loaded it adds a byPod
// entry.
type gatekeeperObjectObservation struct {
	Exists     bool
	Generation int64
	ByPod      []constraintPodStatus
}

// observeGatekeeperObject reads metadata.generation and status.byPod[] {id,
// observedGeneration, errors}.
func observeGatekeeperObject(u *unstructured.Unstructured) gatekeeperObjectObservation {
	if u == nil {
		return gatekeeperObjectObservation{}
	}
	return gatekeeperObjectObservation{Exists: true, Generation: u.GetGeneration(), ByPod: observeByPod(u)}
}

// observeByPod reads status.byPod[] {id, enforced, observedGeneration, errors}, sorted by id.
func observeByPod(u *unstructured.Unstructured) []constraintPodStatus {
	var out []constraintPodStatus
	byPod, _, _ := unstructured.NestedSlice(u.Object, "status", "byPod")
	for _, p := range byPod {
		pod, ok := p.(map[string]interface{})
		if !ok {
			continue
		}
		st := constraintPodStatus{Errors: gatekeeperErrors(pod)}
		st.ID, _, _ = unstructured.NestedString(pod, "id")
		st.Enforced, _, _ = unstructured.NestedBool(pod, "enforced")
		st.ObservedGeneration, _, _ = unstructured.NestedInt64(pod, "observedGeneration")
		eps, _, _ := unstructured.NestedSlice(pod, "enforcementPointsStatus")
		for _, e := range eps {
			ep, ok := e.(map[string]interface{})
			if !ok || str(ep, "enforcementPoint") != templates.EnforcementPointVAP {
				continue
			}
			gen, _, _ := unstructured.NestedInt64(ep, "observedGeneration")
			st.VAP = vapGeneration{State: str(ep, "state"), Message: str(ep, "message"), ObservedGeneration: gen}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
