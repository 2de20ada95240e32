package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// The admission probe checks end to end that admission rejects violations now: it asks the
// API server to create (server-side dry run, nothing is stored) a pod that violates a policy of
// its own, in a namespace of its own. Gatekeeper's status only says what Gatekeeper last
// reported; the probe goes through the same path as every pod creation.
//
// Its RBAC cost is one namespaced Role: create pods in the probe namespace (RBAC cannot limit
// a verb to dry runs, so the namespace carries a ResourceQuota of zero pods and enforces the
// restricted Pod Security profile), plus one more constraint kind (pscadmissionprobe).

// Defaults of the probe; main.go exposes them as flags.
const (
	DefaultProbeNamespace = "psc-probe"
	DefaultProbeInterval  = 15 * time.Second
	DefaultProbeTimeout   = 10 * time.Second
	DefaultProbeThreshold = 2

	// probeQuotaName is the probe namespace's ResourceQuota (pods: "0", config/probe).
	probeQuotaName = "psc-admission-probe"
	// probeServiceAccount is the probe pod's service account (config/probe); it has no token
	// and no permissions.
	probeServiceAccount = "psc-admission-probe"
	// probePodName is the dry-run pod's name.
	probePodName = "psc-admission-probe"
	// probeLabel marks the probe pod; the probe constraint denies pods carrying it.
	probeLabel      = "policy.podsecurity.dev/admission-probe"
	probeLabelValue = "deny"
	// probeDenyMarker starts the probe policy's message.
	probeDenyMarker = "psc/admissionProbe:"
)

// AdmissionProbe periodically sends the probe request while armed and keeps the verdict.
// It runs on the leader only (the reconciler that reads it runs there).
type AdmissionProbe struct {
	// Client creates the dry-run pod.
	Client client.Client
	// Namespace is where the probe pod is created and the only namespace its policy matches.
	Namespace string
	// Interval between probes (jittered by ±20 %); Timeout of one request; Threshold
	// consecutive failures change the verdict; after a failure below the threshold the next
	// probe comes after ConfirmAfter.
	Interval, Timeout, ConfirmAfter time.Duration
	Threshold                       int

	events  chan event.GenericEvent
	wake    chan struct{}
	metrics *probeMetrics

	mu    sync.Mutex
	armed bool
	state admissionState
}

// NewAdmissionProbe creates a probe with the default timing and registers its metrics in reg
// (nil: no metrics).
func NewAdmissionProbe(c client.Client, namespace string, reg prometheus.Registerer) (*AdmissionProbe, error) {
	p := &AdmissionProbe{
		Client: c, Namespace: namespace,
		Interval: DefaultProbeInterval, Timeout: DefaultProbeTimeout, ConfirmAfter: DefaultProbeInterval / 3,
		Threshold: DefaultProbeThreshold,
		events:    make(chan event.GenericEvent, 1),
		wake:      make(chan struct{}, 1),
		state:     admissionState{Verdict: VerdictIdle},
	}
	if reg != nil {
		m, err := newProbeMetrics(reg)
		if err != nil {
			return nil, err
		}
		p.metrics = m
	}
	p.metrics.setVerdict(VerdictIdle)
	return p, nil
}

// NeedLeaderElection: only the leader reconciles, so only the leader probes.
func (p *AdmissionProbe) NeedLeaderElection() bool { return true }

// Events are sent when the verdict changes; the reconciler watches them (source.Channel).
func (p *AdmissionProbe) Events() <-chan event.GenericEvent { return p.events }

// Arm starts (true) or stops (false) probing. The reconciler arms the probe once Gatekeeper
// reports the probe policy enforced and disarms it when there is nothing to verify. Disarming
// forgets the verdict: the next arming starts with Verifying.
func (p *AdmissionProbe) Arm(armed bool) {
	p.mu.Lock()
	changed := p.armed != armed
	p.armed = armed
	if changed && !armed {
		p.state = admissionState{Verdict: VerdictIdle}
	}
	if changed && armed {
		p.state = admissionState{Verdict: VerdictVerifying, Since: time.Now()}
	}
	verdict := p.state.Verdict
	p.mu.Unlock()
	if changed {
		p.metrics.setVerdict(verdict)
		if armed {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Facts is the current verdict for the status derivation.
func (p *AdmissionProbe) Facts() *admissionFacts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &admissionFacts{Verdict: p.state.Verdict, Message: p.state.Message, Since: p.state.Since}
}

// Start runs the probe loop until ctx ends.
func (p *AdmissionProbe) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("admission-probe")
	timer := time.NewTimer(p.Interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-timer.C:
		}
		next := p.jittered()
		p.mu.Lock()
		armed := p.armed
		p.mu.Unlock()
		if armed {
			if failing := p.probeOnce(ctx, log); failing {
				next = p.ConfirmAfter
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

func (p *AdmissionProbe) jittered() time.Duration {
	j := time.Duration(float64(p.Interval) * (0.8 + 0.4*rand.Float64())) //nolint:gosec // timing jitter, not security
	return max(j, time.Millisecond)
}

// probeOnce sends one probe and folds its result in; it returns whether the result counts
// toward a verdict change that has not happened yet (so the next probe confirms sooner).
func (p *AdmissionProbe) probeOnce(ctx context.Context, log logr.Logger) bool {
	rctx, cancel := context.WithTimeout(ctx, p.Timeout)
	start := time.Now()
	err := p.Client.Create(rctx, probePod(p.Namespace), client.DryRunAll)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	outcome, detail := classifyProbe(err, probeDenyMarker, probeQuotaName)
	res := probeResult{Outcome: outcome, Detail: detail, Time: time.Now()}
	p.metrics.observeProbe(outcome, time.Since(start), res.Time)

	p.mu.Lock()
	if !p.armed {
		p.mu.Unlock()
		return false
	}
	prev := p.state
	p.state = nextAdmissionState(prev, res, p.Threshold, p.Namespace)
	cur := p.state
	p.mu.Unlock()

	log.V(1).Info("Probed admission", "outcome", outcome, "detail", detail, "verdict", cur.Verdict, "failures", cur.Failures,
		"duration", time.Since(start).String())
	if cur.Verdict != prev.Verdict {
		log.Info("Changed admission verdict", "from", prev.Verdict, "to", cur.Verdict, "message", cur.Message)
		p.metrics.setVerdict(cur.Verdict)
		p.notify()
	}
	return outcome != ProbeDenied && cur.Failures < p.Threshold
}

// notify triggers a reconcile of the CR; one pending event is enough.
func (p *AdmissionProbe) notify() {
	obj := &v1alpha1.PodSecurityConstraints{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ClusterName}}
	select {
	case p.events <- event.GenericEvent{Object: obj}:
	default:
	}
}

// probePod is the pod the probe asks to create. It complies with the restricted Pod Security
// profile (which the probe namespace enforces, and which runs before the webhooks) and carries
// the label the probe policy denies.
func probePod(namespace string) *corev1.Pod {
	no, yes := false, true
	uid := int64(65532)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: probePodName, Namespace: namespace,
			Labels: map[string]string{probeLabel: probeLabelValue, "app.kubernetes.io/part-of": "psc-operator"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName:           probeServiceAccount,
			AutomountServiceAccountToken: &no,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:  "probe",
				Image: "registry.k8s.io/pause:3.10",
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes, Privileged: &no,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// probeMetrics are the probe's gauges and counters.
type probeMetrics struct {
	enforced     prometheus.Gauge
	state        *prometheus.GaugeVec
	probes       *prometheus.CounterVec
	duration     prometheus.Histogram
	lastVerified prometheus.Gauge
}

func newProbeMetrics(reg prometheus.Registerer) (*probeMetrics, error) {
	m := &probeMetrics{
		enforced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "psc_admission_enforced",
			Help: "1 while the admission probe verifies that Gatekeeper's webhook denies violations, 0 otherwise (not enforced, failing, unknown or nothing to verify).",
		}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "psc_admission_state",
			Help: "1 for the admission probe's current verdict (Idle, Verifying, Enforced, NotEnforced, WebhookFailing, Unverified), 0 for the others.",
		}, []string{"state"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psc_admission_probes_total",
			Help: "Admission probe requests by outcome (Denied, Admitted, WebhookFailed, NotRunnable, Error).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "psc_admission_probe_duration_seconds",
			Help:    "Duration of admission probe requests (a dry-run pod creation through every admission webhook).",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		lastVerified: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "psc_admission_last_verified_timestamp_seconds",
			Help: "Unix time of the last probe that Gatekeeper's webhook denied.",
		}),
	}
	for _, c := range []prometheus.Collector{m.enforced, m.state, m.probes, m.duration, m.lastVerified} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering admission probe metrics: %w", err)
		}
	}
	return m, nil
}

func (m *probeMetrics) setVerdict(v AdmissionVerdict) {
	if m == nil {
		return
	}
	for _, s := range allVerdicts {
		val := 0.0
		if s == v {
			val = 1
		}
		m.state.WithLabelValues(string(s)).Set(val)
	}
	if v == VerdictEnforced {
		m.enforced.Set(1)
	} else {
		m.enforced.Set(0)
	}
}

func (m *probeMetrics) observeProbe(o ProbeOutcome, d time.Duration, at time.Time) {
	if m == nil {
		return
	}
	m.probes.WithLabelValues(string(o)).Inc()
	m.duration.Observe(d.Seconds())
	if o == ProbeDenied {
		m.lastVerified.Set(float64(at.Unix()))
	}
}
