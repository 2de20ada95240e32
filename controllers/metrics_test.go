package controllers

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.observe(v1alpha1.PodSecurityConstraintsStatus{Features: []v1alpha1.FeatureStatus{
		{Name: "capabilities", State: v1alpha1.FeatureEnforced, TotalViolations: 4},
		{Name: "sysctls", State: v1alpha1.FeatureDisabled},
	}})
	want := `
# HELP psc_feature_audit_violations Audit violations Gatekeeper reports for each pod security feature (status.features[].totalViolations: a lower bound for a feature sharing its constraint beyond Gatekeeper's --constraint-violations-limit).
# TYPE psc_feature_audit_violations gauge
psc_feature_audit_violations{feature="capabilities"} 4
psc_feature_audit_violations{feature="sysctls"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "psc_feature_audit_violations"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.featureState.WithLabelValues("capabilities", "Enforced")); got != 1 {
		t.Errorf("capabilities Enforced gauge %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.featureState.WithLabelValues("capabilities", "Pending")); got != 0 {
		t.Errorf("capabilities Pending gauge %v, want 0", got)
	}
	m.statusUpdated()
	if got := testutil.ToFloat64(m.statusUpdates); got != 1 {
		t.Errorf("status updates counter %v, want 1", got)
	}
	m.forget()
	if n := testutil.CollectAndCount(reg, "psc_feature_state", "psc_feature_audit_violations"); n != 0 {
		t.Errorf("%d series left after the CR was deleted", n)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("registering twice succeeded")
	}
}

// TestMetricsFollowPrometheusConventions runs Prometheus' own linter over every series the
// operator exports (names in snake_case with the psc_ prefix, no _total on gauges, help text).
func TestMetricsFollowPrometheusConventions(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.observe(v1alpha1.PodSecurityConstraintsStatus{Features: []v1alpha1.FeatureStatus{{Name: "capabilities", State: v1alpha1.FeatureEnforced}}})
	m.statusUpdated()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 3 {
		t.Fatalf("gathered %d metric families, want 3", len(mfs))
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "psc_") {
			t.Errorf("metric %s lacks the psc_ prefix", mf.GetName())
		}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			if l.GetName() != strings.ToLower(l.GetName()) {
				t.Errorf("metric %s: label %s is not snake_case", mf.GetName(), l.GetName())
			}
		}
	}
}
