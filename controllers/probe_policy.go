package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// The probe policy: one ConstraintTemplate and constraint of the operator's own that deny only
// pods labelled policy.podsecurity.dev/admission-probe=deny in the probe namespace. It is Rego
// only, so Gatekeeper never generates a ValidatingAdmissionPolicy for it: the probe tests the
// webhook path. It carries the managed-by label, so the informer cache holds it and its watch
// restores drift like any feature's object, and a component label that the feature pruner
// skips: this file alone applies and removes it.

// +kubebuilder:rbac:groups=constraints.gatekeeper.sh,resources=pscadmissionprobe,verbs=get;list;watch;create;update;patch;delete
// The probe's pod creation (dry run) is granted by a Role in the probe namespace (config/probe),
// not by this ClusterRole.

const (
	probeTemplateName   = "pscadmissionprobe"
	probeConstraintKind = "PSCAdmissionProbe"
	probeConstraintName = "psc-admission-probe"
	labelComponent      = "policy.podsecurity.dev/component"
	probeComponent      = "admission-probe"
)

const probeRego = `package pscadmissionprobe

violation contains {"msg": msg} if {
	input.review.object.metadata.labels["` + probeLabel + `"] == "` + probeLabelValue + `"
	msg := "` + probeDenyMarker + ` this pod is psc-operator's admission probe, denied by design (it is only ever created as a dry run)"
}
`

func probeLabels() map[string]string {
	return map[string]string{
		templates.LabelManagedBy:    templates.ManagedByValue,
		"app.kubernetes.io/part-of": "psc-operator",
		labelComponent:              probeComponent,
	}
}

// isProbeObject reports whether obj is part of the probe policy, whose lifecycle
// reconcileAdmissionProbe owns.
func isProbeObject(obj metav1.Object) bool {
	return obj.GetLabels()[labelComponent] == probeComponent
}

// probeConstraintGVK is the probe constraint's kind.
func probeConstraintGVK() schema.GroupVersionKind {
	return templates.ConstraintGroupVersion.WithKind(probeConstraintKind)
}

// renderProbeTemplate is the probe policy's ConstraintTemplate.
func renderProbeTemplate() *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]interface{}{
		"spec": map[string]interface{}{
			"crd": map[string]interface{}{"spec": map[string]interface{}{
				"names": map[string]interface{}{"kind": probeConstraintKind},
			}},
			"targets": []interface{}{map[string]interface{}{
				"target": "admission.k8s.gatekeeper.sh",
				"code": []interface{}{map[string]interface{}{
					"engine": "Rego",
					"source": map[string]interface{}{"version": "v1", "rego": probeRego},
				}},
			}},
		},
	}}
	u.SetGroupVersionKind(templates.TemplateGVK)
	u.SetName(probeTemplateName)
	u.SetLabels(probeLabels())
	u.SetAnnotations(map[string]string{"description": "psc-operator's admission probe: denies only pods labelled " +
		probeLabel + "=" + probeLabelValue + " in the probe namespace, so the operator can verify that admission rejects violations."})
	return u
}

// renderProbeConstraint is the probe policy's constraint, matching only the probe namespace.
// It does not take the CR's namespace exclusions: those are about the features, and a probe
// the user's globs could switch off would verify nothing.
func renderProbeConstraint(namespace string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]interface{}{
		"spec": map[string]interface{}{
			// Scoped to the webhook alone: the probe tests that path, and naming the point keeps
			// Gatekeeper's --default-create-vap-binding-for-constraints (true in v3.23) from
			// trying to bind a policy its Rego-only template cannot generate.
			"enforcementAction": "scoped",
			"scopedEnforcementActions": []interface{}{map[string]interface{}{
				"action":            "deny",
				"enforcementPoints": []interface{}{map[string]interface{}{"name": templates.EnforcementPointWebhook}},
			}},
			"match": map[string]interface{}{
				"kinds":         []interface{}{map[string]interface{}{"apiGroups": []interface{}{""}, "kinds": []interface{}{"Pod"}}},
				"namespaces":    []interface{}{namespace},
				"labelSelector": map[string]interface{}{"matchLabels": map[string]interface{}{probeLabel: probeLabelValue}},
			},
		},
	}}
	u.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(probeConstraintKind))
	u.SetName(probeConstraintName)
	u.SetLabels(probeLabels())
	return u
}

// reconcileAdmissionProbe applies or removes the probe policy, arms the probe once Gatekeeper
// enforces that policy, and returns the admission facts for the status (nil: nothing to say).
// It runs after the pipeline and leaves its result alone unless the probe policy waits.
func (r *Reconciler) reconcileAdmissionProbe(ctx context.Context, obj *v1alpha1.PodSecurityConstraints, facts reconcileFacts, result ctrl.Result) (*admissionFacts, ctrl.Result) {
	if r.Probe == nil {
		return nil, result
	}
	if facts.featuresUnknown() {
		// Nothing was changed: keep probing what is in place.
		return r.Probe.Facts(), result
	}
	if facts.Failed != nil && facts.Failed.Reason == ReasonGatekeeperNotInstalled {
		r.Probe.Arm(false)
		return nil, result
	}
	if !facts.MasterEnabled || !anyFeatureEnabled(facts) {
		r.Probe.Arm(false)
		if err := r.removeProbePolicy(ctx); err != nil {
			logf.FromContext(ctx).Error(err, "Removing the admission probe policy failed")
			return nil, ctrl.Result{RequeueAfter: transientRequeue}
		}
		return nil, result
	}

	state, msg := r.applyProbePolicy(ctx, obj)
	switch state {
	case v1alpha1.FeatureEnforced:
		r.Probe.Arm(true)
		return r.Probe.Facts(), result
	case v1alpha1.FeatureError:
		r.Probe.Arm(false)
		return &admissionFacts{Verdict: VerdictUnverified, Message: "The admission probe cannot run: its policy failed: " + msg}, result
	}
	r.Probe.Arm(false)
	return &admissionFacts{Verdict: VerdictVerifying, Message: "Waiting for Gatekeeper to enforce the admission probe policy: " + msg},
		ctrl.Result{RequeueAfter: transientRequeue}
}

func anyFeatureEnabled(facts reconcileFacts) bool {
	for _, f := range facts.Features {
		if f.Enabled {
			return true
		}
	}
	return false
}

// applyProbePolicy applies the probe template, then its constraint once Gatekeeper serves the
// kind, and reads Gatekeeper's status of both through the same checks as a feature's.
func (r *Reconciler) applyProbePolicy(ctx context.Context, obj *v1alpha1.PodSecurityConstraints) (v1alpha1.FeatureState, string) {
	var f featureFacts
	live, _, err := r.applyObject(ctx, obj, renderProbeTemplate())
	if err != nil {
		if isTransient(err) {
			return v1alpha1.FeaturePending, err.Error()
		}
		return v1alpha1.FeatureError, "applying the template failed: " + err.Error()
	}
	f.Template = observeTemplate(live)
	f.ConstraintCRDReady = r.crdEstablished(ctx, probeConstraintGVK())
	if f.Template.Created && len(f.Template.Errors) == 0 && f.ConstraintCRDReady {
		live, _, err = r.applyObject(ctx, obj, renderProbeConstraint(r.Probe.Namespace))
		switch {
		case err != nil && isTransient(err):
			f.Waiting = err.Error()
		case err != nil:
			f.ApplyError = "applying the constraint failed: " + err.Error()
		default:
			f.Constraint = observeConstraint(live)
		}
	}
	state, msg := featureState(f)
	return state, msg
}

// removeProbePolicy deletes the probe constraint and template (either may be absent).
func (r *Reconciler) removeProbePolicy(ctx context.Context) error {
	for _, u := range []*unstructured.Unstructured{renderProbeConstraint(""), renderProbeTemplate()} {
		err := r.Client.Delete(ctx, u)
		switch {
		case err == nil:
			logf.FromContext(ctx).Info("Removed the admission probe policy object", "kind", u.GetKind(), "name", u.GetName())
		case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		default:
			return fmt.Errorf("deleting %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}
