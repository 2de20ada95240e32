package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

var podsGR = schema.GroupResource{Resource: "pods"}

// TestClassifyProbe reads API server answers as the API server words them (admission
// plugins and webhook dispatcher of k8s.io/apiserver v0.36.2).
func TestClassifyProbe(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want ProbeOutcome
	}{
		{"admitted", nil, ProbeAdmitted},
		{"denied by the probe policy", apierrors.NewForbidden(podsGR, "psc-admission-probe", errors.New(
			`admission webhook "validation.gatekeeper.sh" denied the request: [psc-admission-probe] psc/admissionProbe: this pod is psc-operator's admission probe`)), ProbeDenied},
		{"denied by the probe and a feature", apierrors.NewForbidden(podsGR, "psc-admission-probe", errors.New(
			`admission webhook "validation.gatekeeper.sh" denied the request: [psc-seccomp] psc/seccomp: x
[psc-admission-probe] psc/admissionProbe: y`)), ProbeDenied},
		{"stopped by the probe quota after the webhooks", apierrors.NewForbidden(podsGR, "psc-admission-probe", errors.New(
			"exceeded quota: psc-admission-probe, requested: pods=1, used: pods=0, limited: pods=0")), ProbeAdmitted},
		{"quota status not computed yet (no quota controller)", apierrors.NewForbidden(podsGR, "psc-admission-probe", errors.New(
			"status unknown for quota: psc-admission-probe, resources: pods")), ProbeAdmitted},
		{"someone else's quota", apierrors.NewForbidden(podsGR, "psc-admission-probe", errors.New(
			"exceeded quota: team-quota, requested: pods=1")), ProbeError},
		{"webhook call failed, failurePolicy Fail", apierrors.NewInternalError(errors.New(
			`failed calling webhook "validation.gatekeeper.sh": failed to call webhook: Post "https://127.0.0.1:37445/v1/admit?timeout=3s": dial tcp 127.0.0.1:37445: connect: connection refused`)),
			ProbeWebhookFailed},
		{"webhook timeout, failurePolicy Fail", apierrors.NewInternalError(errors.New(
			`failed calling webhook "validation.gatekeeper.sh": failed to call webhook: Post "https://gatekeeper-webhook-service.gatekeeper-system.svc:443/v1/admit?timeout=3s": context deadline exceeded`)),
			ProbeWebhookFailed},
		{"no RBAC", apierrors.NewForbidden(podsGR, "", errors.New(
			`User "system:serviceaccount:psc-system:psc-operator" cannot create resource "pods" in API group "" in the namespace "psc-probe"`)), ProbeNotRunnable},
		{"namespace missing", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "psc-probe"), ProbeNotRunnable},
		{"pod security admission", apierrors.NewForbidden(podsGR, "psc-admission-probe", errors.New(
			`violates PodSecurity "restricted:latest": runAsNonRoot != true`)), ProbeNotRunnable},
		{"another webhook denied first", apierrors.NewForbidden(podsGR, "psc-admission-probe", errors.New(
			`admission webhook "images.example.com" denied the request: unsigned image`)), ProbeError},
		{"client timeout", fmt.Errorf("Post: %w", errors.New("context deadline exceeded")), ProbeError},
		{"API server unavailable", apierrors.NewServiceUnavailable("etcd leader changed"), ProbeError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, detail := classifyProbe(tc.err, probeDenyMarker, probeQuotaName)
			if got != tc.want {
				t.Errorf("classifyProbe = %s (%s), want %s", got, detail, tc.want)
			}
			if detail == "" {
				t.Error("no detail")
			}
		})
	}
}

// TestNextAdmissionState runs sequences of probe outcomes through the hysteresis.
func TestNextAdmissionState(t *testing.T) {
	const (
		D = ProbeDenied
		A = ProbeAdmitted
		W = ProbeWebhookFailed
		E = ProbeError
		N = ProbeNotRunnable
	)
	for _, tc := range []struct {
		name      string
		threshold int
		outcomes  []ProbeOutcome
		// want is the verdict after each outcome.
		want []AdmissionVerdict
	}{
		{"first denial verifies", 2, []ProbeOutcome{D}, []AdmissionVerdict{VerdictEnforced}},
		{"one admitted probe among denials does not flap", 2, []ProbeOutcome{D, A, D, A, D},
			[]AdmissionVerdict{VerdictEnforced, VerdictEnforced, VerdictEnforced, VerdictEnforced, VerdictEnforced}},
		{"two admitted in a row flip to NotEnforced, one denial restores", 2, []ProbeOutcome{D, A, A, A, D},
			[]AdmissionVerdict{VerdictEnforced, VerdictEnforced, VerdictNotEnforced, VerdictNotEnforced, VerdictEnforced}},
		{"threshold 3", 3, []ProbeOutcome{D, A, A, A},
			[]AdmissionVerdict{VerdictEnforced, VerdictEnforced, VerdictEnforced, VerdictNotEnforced}},
		{"threshold 1 flips at once", 1, []ProbeOutcome{D, A}, []AdmissionVerdict{VerdictEnforced, VerdictNotEnforced}},
		{"a slow Gatekeeper: sporadic timeouts never flip", 2, []ProbeOutcome{D, E, D, E, D, W, D},
			[]AdmissionVerdict{VerdictEnforced, VerdictEnforced, VerdictEnforced, VerdictEnforced, VerdictEnforced, VerdictEnforced, VerdictEnforced}},
		{"webhook failing under failurePolicy Fail", 2, []ProbeOutcome{D, W, W}, []AdmissionVerdict{VerdictEnforced, VerdictEnforced, VerdictWebhookFailing}},
		{"mixed failures: the latest names the verdict", 2, []ProbeOutcome{D, W, A}, []AdmissionVerdict{VerdictEnforced, VerdictEnforced, VerdictNotEnforced}},
		{"errors leave it unverified", 2, []ProbeOutcome{D, E, E}, []AdmissionVerdict{VerdictEnforced, VerdictEnforced, VerdictUnverified}},
		{"before any denial a failure keeps Verifying", 2, []ProbeOutcome{A, A}, []AdmissionVerdict{VerdictVerifying, VerdictNotEnforced}},
		{"cannot run", 2, []ProbeOutcome{N, N}, []AdmissionVerdict{VerdictVerifying, VerdictUnverified}},
		{"from NotEnforced to WebhookFailing", 2, []ProbeOutcome{A, A, W}, []AdmissionVerdict{VerdictVerifying, VerdictNotEnforced, VerdictWebhookFailing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := admissionState{Verdict: VerdictIdle}
			t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
			var got []AdmissionVerdict
			for i, o := range tc.outcomes {
				prev := st
				st = nextAdmissionState(st, probeResult{Outcome: o, Detail: "d", Time: t0.Add(time.Duration(i) * 15 * time.Second)}, tc.threshold, "psc-probe")
				got = append(got, st.Verdict)
				if st.Verdict == prev.Verdict && st.Message != prev.Message {
					t.Errorf("step %d: the message changed without a verdict change: %q -> %q", i, prev.Message, st.Message)
				}
				if st.Verdict != prev.Verdict && st.Since != t0.Add(time.Duration(i)*15*time.Second) {
					t.Errorf("step %d: Since %s is not the time of the change", i, st.Since)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("verdicts %v, want %v", got, tc.want)
			}
		})
	}
}

func TestVerdictMessages(t *testing.T) {
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	st := admissionState{Verdict: VerdictEnforced}
	st = nextAdmissionState(st, probeResult{Outcome: ProbeAdmitted, Detail: "the dry-run creation succeeded", Time: at}, 2, "psc-probe")
	st = nextAdmissionState(st, probeResult{Outcome: ProbeAdmitted, Detail: "the dry-run creation succeeded", Time: at}, 2, "psc-probe")
	for _, want := range []string{"Pods are admitted unchecked", "namespace psc-probe", "2026-11-30T06:00:00Z", "failurePolicy Ignore"} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("NotEnforced message %q lacks %q", st.Message, want)
		}
	}
}

// TestDeriveStatusWithAdmission: the probe's verdict on top of features Gatekeeper reports
// enforced (and on top of other states).
func TestDeriveStatusWithAdmission(t *testing.T) {
	enforced := func() []featureFacts {
		return []featureFacts{enforcedFacts("privilegedContainers"), enforcedFacts("hostNamespaces")}
	}
	pending := func() []featureFacts {
		fs := enforced()
		fs[1].Constraint.ByPod = nil
		return fs
	}
	verdict := func(v AdmissionVerdict, msg string) *admissionFacts {
		return &admissionFacts{Verdict: v, Message: msg, Since: time.Unix(0, 0)}
	}
	for _, tc := range []struct {
		name         string
		features     []featureFacts
		master       bool
		admission    *admissionFacts
		failed       *failure
		wantStatus   metav1.ConditionStatus
		wantReason   string
		wantMsg      string // substring
		wantFeature  v1alpha1.FeatureState
		wantEnforced int32
		wantStalled  bool
		wantRecon    bool
	}{
		{name: "probe off: Gatekeeper's word", features: enforced(), master: true,
			wantStatus: metav1.ConditionTrue, wantReason: ReasonEnforced, wantMsg: "All 2 enabled features are enforced.",
			wantFeature: v1alpha1.FeatureEnforced, wantEnforced: 2},
		{name: "verified", features: enforced(), master: true, admission: verdict(VerdictEnforced, "denied"),
			wantStatus: metav1.ConditionTrue, wantReason: ReasonEnforced, wantMsg: "a probe pod verifies that admission denies violations",
			wantFeature: v1alpha1.FeatureEnforced, wantEnforced: 2},
		{name: "first probe pending", features: enforced(), master: true, admission: verdict(VerdictVerifying, ""),
			wantStatus: metav1.ConditionFalse, wantReason: ReasonProgressing, wantMsg: "verifying with a probe pod",
			wantFeature: v1alpha1.FeatureEnforced, wantEnforced: 2, wantRecon: true},
		{name: "probe policy not loaded yet", features: enforced(), master: true,
			admission:  verdict(VerdictVerifying, "Waiting for Gatekeeper to enforce the admission probe policy: Waiting for Gatekeeper to create the ConstraintTemplate."),
			wantStatus: metav1.ConditionFalse, wantReason: ReasonProgressing, wantMsg: "Waiting for Gatekeeper to enforce the admission probe policy",
			wantFeature: v1alpha1.FeatureEnforced, wantEnforced: 2, wantRecon: true},
		{name: "admitted unchecked", features: enforced(), master: true, admission: verdict(VerdictNotEnforced, "Pods are admitted unchecked: x."),
			wantStatus: metav1.ConditionFalse, wantReason: ReasonAdmissionNotEnforced, wantMsg: "Pods are admitted unchecked: x. None of the 2 enabled features is enforced at admission",
			wantFeature: v1alpha1.FeatureNotEnforced, wantEnforced: 0},
		{name: "admitted unchecked wins over features still pending", features: pending(), master: true, admission: verdict(VerdictNotEnforced, "Pods are admitted unchecked: x."),
			wantStatus: metav1.ConditionFalse, wantReason: ReasonAdmissionNotEnforced, wantMsg: "Pods are admitted unchecked",
			wantFeature: v1alpha1.FeatureNotEnforced, wantEnforced: 0},
		{name: "webhook failing closed", features: enforced(), master: true, admission: verdict(VerdictWebhookFailing, "Calls to Gatekeeper's webhook fail"),
			wantStatus: metav1.ConditionFalse, wantReason: ReasonAdmissionWebhookFailing, wantMsg: "Calls to Gatekeeper's webhook fail",
			wantFeature: v1alpha1.FeatureNotEnforced, wantEnforced: 0},
		{name: "unverified: features keep Gatekeeper's state, Ready does not claim", features: enforced(), master: true, admission: verdict(VerdictUnverified, "The admission probe cannot run"),
			wantStatus: metav1.ConditionFalse, wantReason: ReasonAdmissionUnverified, wantMsg: "cannot run",
			wantFeature: v1alpha1.FeatureEnforced, wantEnforced: 2},
		{name: "Gatekeeper not installed wins", features: enforced(), master: true, admission: verdict(VerdictNotEnforced, "x"),
			failed:     &failure{Reason: ReasonGatekeeperNotInstalled, Message: "not installed"},
			wantStatus: metav1.ConditionFalse, wantReason: ReasonGatekeeperNotInstalled, wantMsg: "not installed",
			wantFeature: v1alpha1.FeatureNotEnforced, wantEnforced: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			facts := reconcileFacts{Generation: 3, MasterEnabled: tc.master, Features: tc.features, Admission: tc.admission, Failed: tc.failed}
			st := deriveStatus(facts, v1alpha1.PodSecurityConstraintsStatus{}, metav1.Now())
			ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
			if ready == nil || ready.Status != tc.wantStatus || ready.Reason != tc.wantReason || !strings.Contains(ready.Message, tc.wantMsg) {
				t.Fatalf("Ready = %+v, want %s/%s containing %q", ready, tc.wantStatus, tc.wantReason, tc.wantMsg)
			}
			if got := st.Features[0].State; got != tc.wantFeature {
				t.Errorf("feature state %s, want %s (%s)", got, tc.wantFeature, st.Features[0].Message)
			}
			if st.Features[0].Enforced != (tc.wantFeature == v1alpha1.FeatureEnforced) {
				t.Errorf("feature enforced = %v with state %s", st.Features[0].Enforced, st.Features[0].State)
			}
			if st.EnforcedFeatures != tc.wantEnforced {
				t.Errorf("enforcedFeatures %d, want %d", st.EnforcedFeatures, tc.wantEnforced)
			}
			if got := meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionStalled); got != tc.wantStalled {
				t.Errorf("Stalled = %v, want %v", got, tc.wantStalled)
			}
			if got := meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReconciling); got != tc.wantRecon {
				t.Errorf("Reconciling = %v, want %v", got, tc.wantRecon)
			}
		})
	}
}

// TestProbePodIsRestricted: the probe pod must pass the restricted Pod Security profile the
// probe namespace enforces (Pod Security Admission runs before the webhooks).
func TestProbePodIsRestricted(t *testing.T) {
	pod := probePod("psc-probe")
	if pod.Labels[probeLabel] != probeLabelValue {
		t.Fatalf("probe pod lacks %s=%s", probeLabel, probeLabelValue)
	}
	checkRestricted(t, &pod.ObjectMeta, &pod.Spec)
}

func checkRestricted(t *testing.T, meta *metav1.ObjectMeta, spec *corev1.PodSpec) {
	t.Helper()
	evaluator, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	results := evaluator.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, meta, spec)
	if agg := psapolicy.AggregateCheckResults(results); !agg.Allowed {
		t.Errorf("the probe pod violates the restricted profile: %s", agg.ForbiddenDetail())
	}
}
