package controllers

import (
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// This file holds the pure half of the admission probe (probe.go sends the requests): what one
// probe request means, how consecutive results turn into a verdict (with hysteresis, so that a
// slow but healthy Gatekeeper does not flap), and how the verdict shapes Ready and the features.

// Ready reasons of the admission probe.
const (
	// ReasonAdmissionNotEnforced: a pod violating the probe policy was admitted, so Gatekeeper's
	// webhook is not judging pods (it is down and fails open, or its webhook is not registered).
	ReasonAdmissionNotEnforced = "AdmissionNotEnforced"
	// ReasonAdmissionWebhookFailing: calling Gatekeeper's webhook fails and its failurePolicy is
	// Fail, so the API server rejects pods without judging them.
	ReasonAdmissionWebhookFailing = "AdmissionWebhookFailing"
	// ReasonAdmissionUnverified: the probe cannot run or its requests fail for another reason;
	// whether violations are rejected is unknown.
	ReasonAdmissionUnverified = "AdmissionUnverified"
)

// ProbeOutcome is what one probe request found.
type ProbeOutcome string

const (
	// ProbeDenied: denied with the probe policy's message, so Gatekeeper's webhook judged it.
	ProbeDenied ProbeOutcome = "Denied"
	// ProbeAdmitted: the request passed every admission webhook (admitted, or stopped only by
	// the probe namespace's ResourceQuota, which the API server checks after the webhooks).
	ProbeAdmitted ProbeOutcome = "Admitted"
	// ProbeWebhookFailed: the API server rejected the request because calling a webhook failed
	// under failurePolicy Fail.
	ProbeWebhookFailed ProbeOutcome = "WebhookFailed"
	// ProbeNotRunnable: the probe cannot run as installed (namespace missing, no permission,
	// the probe pod rejected before the webhooks).
	ProbeNotRunnable ProbeOutcome = "NotRunnable"
	// ProbeError: anything else (timeout, API server trouble): no verdict.
	ProbeError ProbeOutcome = "Error"
)

// AdmissionVerdict is what the probe concluded about admission.
type AdmissionVerdict string

const (
	// VerdictIdle: nothing to probe (no feature enabled, probe policy not applied).
	VerdictIdle AdmissionVerdict = "Idle"
	// VerdictVerifying: armed, no verdict yet.
	VerdictVerifying AdmissionVerdict = "Verifying"
	// VerdictEnforced: the last probe was denied by the webhook.
	VerdictEnforced AdmissionVerdict = "Enforced"
	// VerdictNotEnforced: consecutive probes were admitted.
	VerdictNotEnforced AdmissionVerdict = "NotEnforced"
	// VerdictWebhookFailing: consecutive probes were rejected because calling the webhook failed.
	VerdictWebhookFailing AdmissionVerdict = "WebhookFailing"
	// VerdictUnverified: consecutive probes failed otherwise, or the probe cannot run.
	VerdictUnverified AdmissionVerdict = "Unverified"
)

// allVerdicts is the order of the psc_admission_state gauge's label values.
var allVerdicts = []AdmissionVerdict{VerdictIdle, VerdictVerifying, VerdictEnforced, VerdictNotEnforced, VerdictWebhookFailing, VerdictUnverified}

// probeResult is one probe request's outcome.
type probeResult struct {
	Outcome ProbeOutcome
	// Detail says what happened in a few words (the API server's message, shortened).
	Detail string
	Time   time.Time
}

// admissionState is the probe's running verdict.
type admissionState struct {
	Verdict AdmissionVerdict
	// Message explains the verdict; it is set when the verdict changes and stays until the
	// next change, so the CR's status and events do not change with every probe.
	Message string
	// Since is when the verdict was reached.
	Since time.Time
	// LastVerified is the time of the last denied probe.
	LastVerified time.Time
	// Failures counts consecutive results other than Denied.
	Failures int
}

// nextAdmissionState folds one probe result into the state. A denial restores Enforced at
// once; anything else changes the verdict only after threshold consecutive failures, so one
// slow or lost request (a webhook timeout under load) does not flip the status.
func nextAdmissionState(prev admissionState, r probeResult, threshold int, namespace string) admissionState {
	if threshold < 1 {
		threshold = 1
	}
	next := prev
	if prev.Verdict == VerdictIdle || prev.Verdict == "" {
		next = admissionState{Verdict: VerdictVerifying, Since: r.Time}
	}
	if r.Outcome == ProbeDenied {
		next.Failures = 0
		next.LastVerified = r.Time
		if next.Verdict != VerdictEnforced {
			next.Verdict, next.Since = VerdictEnforced, r.Time
			next.Message = fmt.Sprintf("A probe pod violating the admission probe policy in namespace %s was denied by Gatekeeper's webhook.", namespace)
		}
		return next
	}
	next.Failures++
	if next.Failures < threshold {
		return next
	}
	verdict := verdictOf(r.Outcome)
	if verdict != next.Verdict {
		next.Verdict, next.Since = verdict, r.Time
		next.Message = verdictMessage(verdict, r, next.Failures, namespace)
	}
	return next
}

func verdictOf(o ProbeOutcome) AdmissionVerdict {
	switch o {
	case ProbeAdmitted:
		return VerdictNotEnforced
	case ProbeWebhookFailed:
		return VerdictWebhookFailing
	default:
		return VerdictUnverified
	}
}

func verdictMessage(v AdmissionVerdict, r probeResult, failures int, namespace string) string {
	since := r.Time.UTC().Format(time.RFC3339)
	switch v {
	case VerdictNotEnforced:
		return fmt.Sprintf("Pods are admitted unchecked: a probe pod violating the admission probe policy in namespace %s was admitted at %s (%s; %d failed probes in a row). "+
			"Gatekeeper's webhook is not judging pods: Gatekeeper is down or not ready and its webhook fails open (failurePolicy Ignore), "+
			"its ValidatingWebhookConfiguration is missing, or Gatekeeper exempts namespace %s.", namespace, since, r.Detail, failures, namespace)
	case VerdictWebhookFailing:
		return fmt.Sprintf("Calls to Gatekeeper's webhook fail and its failurePolicy is Fail: the API server rejects pods without judging them "+
			"(at %s, %d failed probes in a row: %s).", since, failures, r.Detail)
	}
	if r.Outcome == ProbeNotRunnable {
		return fmt.Sprintf("The admission probe cannot run (%s), so whether admission rejects violations is not verified.", r.Detail)
	}
	return fmt.Sprintf("The admission probe failed %d times in a row (last at %s: %s), so whether admission rejects violations is unknown.",
		failures, since, r.Detail)
}

// classifyProbe reads the API server's answer to the dry-run creation of the probe pod.
// denyMarker is the start of the probe policy's message; quota is the name of the probe
// namespace's ResourceQuota (pods: 0), checked by the API server after every webhook.
func classifyProbe(err error, denyMarker, quota string) (ProbeOutcome, string) {
	if err == nil {
		return ProbeAdmitted, "the dry-run creation succeeded"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, denyMarker):
		return ProbeDenied, "denied by the probe policy"
	case apierrors.IsForbidden(err) && (strings.Contains(msg, "exceeded quota: "+quota) || strings.Contains(msg, "status unknown for quota: "+quota)):
		return ProbeAdmitted, "passed every admission webhook and was stopped only by the ResourceQuota " + quota
	case strings.Contains(msg, "failed calling webhook"):
		return ProbeWebhookFailed, shorten(msg)
	case apierrors.IsForbidden(err) && strings.Contains(msg, "cannot create resource"):
		return ProbeNotRunnable, "no permission to create pods there: " + shorten(msg)
	case apierrors.IsNotFound(err):
		return ProbeNotRunnable, shorten(msg)
	case strings.Contains(msg, "violates PodSecurity"):
		return ProbeNotRunnable, "the probe pod was rejected by Pod Security Admission before the webhooks: " + shorten(msg)
	case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
		return ProbeError, "rejected by another admission check, so Gatekeeper's verdict is not known: " + shorten(msg)
	}
	return ProbeError, shorten(msg)
}

func shorten(s string) string {
	const limit = 300
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

// admissionFacts is what the reconcile knows about the admission probe.
type admissionFacts struct {
	Verdict AdmissionVerdict
	Message string
	Since   time.Time
}

// admissionBlocksReady is the Ready condition a bad verdict imposes, if any. st holds the
// features after featureStateUnderAdmission.
//
// With the API server enforcing features itself (spec.validatingAdmissionPolicy) while
// Gatekeeper's webhook does not judge pods, Ready is False with EnforcedByAPIServerOnly
// (Degraded in Argo CD), not True: pods violating a denying feature are still denied, but
// workloads are no longer judged at apply time, pods are not completed by defaults, features
// in warn give no warning, and audit results go stale, until Gatekeeper is back. The reason
// says that pods are still protected, unlike AdmissionNotEnforced.
func admissionBlocksReady(a *admissionFacts, st v1alpha1.PodSecurityConstraintsStatus) (metav1.Condition, bool) {
	if a == nil {
		return metav1.Condition{}, false
	}
	notReady := func(reason, msg string) (metav1.Condition, bool) {
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg}, true
	}
	switch a.Verdict {
	case VerdictNotEnforced:
		var byAPIServer, unchecked []string
		for _, f := range st.Features {
			switch {
			case f.State == v1alpha1.FeatureEnforced && f.ValidatingAdmissionPolicy != nil:
				byAPIServer = append(byAPIServer, f.Name)
			case f.State == v1alpha1.FeatureNotEnforced:
				unchecked = append(unchecked, f.Name)
			}
		}
		if len(byAPIServer) > 0 {
			msg := fmt.Sprintf("Only the API server enforces now: %s The API server still enforces %d of the %d enabled features itself (ValidatingAdmissionPolicy): pods violating them are denied. "+
				"Until Gatekeeper is back, workloads are not judged at apply time, pods are not completed by defaults, and audit results are not refreshed.",
				strings.TrimPrefix(a.Message, "Pods are admitted unchecked: "), len(byAPIServer), st.EnabledFeatures)
			if len(unchecked) > 0 {
				msg += fmt.Sprintf(" Not enforced at all now: %s.", strings.Join(unchecked, ", "))
			}
			return notReady(ReasonEnforcedByAPIServerOnly, msg)
		}
		return notReady(ReasonAdmissionNotEnforced, fmt.Sprintf("%s None of the %d enabled features is enforced at admission; Gatekeeper's audit still reports violations once it runs.",
			a.Message, st.EnabledFeatures))
	case VerdictWebhookFailing:
		return notReady(ReasonAdmissionWebhookFailing, a.Message)
	case VerdictUnverified:
		return notReady(ReasonAdmissionUnverified, a.Message)
	}
	return metav1.Condition{}, false
}

// featureStateUnderAdmission turns a feature Gatekeeper reports enforced into NotEnforced
// while admission is known not to judge pods.
func featureStateUnderAdmission(st *v1alpha1.FeatureStatus, a *admissionFacts) {
	if a == nil || st.State != v1alpha1.FeatureEnforced {
		return
	}
	switch a.Verdict {
	case VerdictNotEnforced:
		if vap := st.ValidatingAdmissionPolicy; vap != nil && vap.State == v1alpha1.APIServerActive {
			st.Message = "Enforced by the API server only (ValidatingAdmissionPolicy " + vap.PolicyName + "): Gatekeeper's webhook is not judging pods (see Ready)."
			return
		}
		st.State, st.Enforced = v1alpha1.FeatureNotEnforced, false
		st.Message = "Gatekeeper reports the constraint enforced, but its webhook is not judging pods: they are admitted unchecked (see Ready)."
	case VerdictWebhookFailing:
		st.State, st.Enforced = v1alpha1.FeatureNotEnforced, false
		st.Message = "Gatekeeper reports the constraint enforced, but calls to its webhook fail: pods are rejected without being judged (see Ready)."
	}
}
