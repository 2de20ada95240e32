package controllers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// Metrics are the operator's own gauges; controller-runtime adds reconcile counts and
// durations (controller_runtime_reconcile_total, controller_runtime_reconcile_time_seconds).
type Metrics struct {
	featureState      *prometheus.GaugeVec
	featureViolations *prometheus.GaugeVec
	statusUpdates     prometheus.Counter
}

// NewMetrics creates the gauges and registers them.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		featureState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "psc_feature_state",
			Help: "1 for the state each pod security feature is in (Enforced, Pending, Error, Disabled), 0 for the others.",
		}, []string{"feature", "state"}),
		featureViolations: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "psc_feature_audit_violations",
			Help: "Audit violations Gatekeeper reports for each pod security feature (status.features[].totalViolations: a lower bound for a feature sharing its constraint beyond Gatekeeper's --constraint-violations-limit).",
		}, []string{"feature"}),
		statusUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "psc_status_updates_total",
			Help: "Writes of the PodSecurityConstraints status (made only when the status changed).",
		}),
	}
	for _, c := range []prometheus.Collector{m.featureState, m.featureViolations, m.statusUpdates} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var allStates = []v1alpha1.FeatureState{v1alpha1.FeatureEnforced, v1alpha1.FeaturePending, v1alpha1.FeatureError, v1alpha1.FeatureDisabled, v1alpha1.FeatureNotEnforced}

func (m *Metrics) observe(st v1alpha1.PodSecurityConstraintsStatus) {
	if m == nil {
		return
	}
	for _, f := range st.Features {
		for _, s := range allStates {
			v := 0.0
			if f.State == s {
				v = 1
			}
			m.featureState.WithLabelValues(f.Name, string(s)).Set(v)
		}
		m.featureViolations.WithLabelValues(f.Name).Set(float64(f.TotalViolations))
	}
}

func (m *Metrics) forget() {
	if m == nil {
		return
	}
	m.featureState.Reset()
	m.featureViolations.Reset()
}

func (m *Metrics) statusUpdated() {
	if m == nil {
		return
	}
	m.statusUpdates.Inc()
}
