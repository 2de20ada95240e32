package controllers

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestProbeLoop drives the probe's loop with an API server answer the test chooses: the
// verdict, the reconcile trigger and the metrics follow, and disarming forgets the verdict.
func TestProbeLoop(t *testing.T) {
	var deny atomic.Bool
	var dryRuns atomic.Int64
	c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(newScheme()).Build(), interceptor.Funcs{
		Create: func(_ context.Context, _ client.WithWatch, _ client.Object, opts ...client.CreateOption) error {
			co := &client.CreateOptions{}
			co.ApplyOptions(opts)
			if len(co.DryRun) == 1 && co.DryRun[0] == "All" {
				dryRuns.Add(1)
			}
			if deny.Load() {
				return apierrors.NewForbidden(podsGR, probePodName, errors.New(`admission webhook "validation.gatekeeper.sh" denied the request: [psc-admission-probe] `+probeDenyMarker+` x`))
			}
			return nil
		},
	})
	reg := prometheus.NewRegistry()
	p, err := NewAdmissionProbe(c, DefaultProbeNamespace, reg)
	if err != nil {
		t.Fatal(err)
	}
	p.Interval, p.ConfirmAfter, p.Threshold = 50*time.Millisecond, 10*time.Millisecond, 2
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Start(ctx) }()
	defer func() { cancel(); <-done }()

	waitVerdict := func(want AdmissionVerdict) {
		t.Helper()
		select {
		case <-p.Events():
		case <-time.After(5 * time.Second):
			t.Fatalf("no reconcile trigger; verdict %s, want %s", p.Facts().Verdict, want)
		}
		if got := p.Facts().Verdict; got != want {
			t.Fatalf("verdict %s, want %s", got, want)
		}
	}

	if got := p.Facts().Verdict; got != VerdictIdle {
		t.Fatalf("verdict before arming %s, want Idle", got)
	}
	time.Sleep(120 * time.Millisecond)
	if n := dryRuns.Load(); n != 0 {
		t.Fatalf("%d probes while disarmed", n)
	}

	deny.Store(true)
	p.Arm(true)
	waitVerdict(VerdictEnforced)
	if got := testutil.ToFloat64(p.metrics.enforced); got != 1 {
		t.Errorf("psc_admission_enforced = %v, want 1", got)
	}
	if got := testutil.ToFloat64(p.metrics.lastVerified); got == 0 {
		t.Error("psc_admission_last_verified_timestamp_seconds not set")
	}

	deny.Store(false)
	waitVerdict(VerdictNotEnforced)
	if got := testutil.ToFloat64(p.metrics.enforced); got != 0 {
		t.Errorf("psc_admission_enforced = %v, want 0", got)
	}
	if got := testutil.ToFloat64(p.metrics.state.WithLabelValues(string(VerdictNotEnforced))); got != 1 {
		t.Errorf("psc_admission_state{state=NotEnforced} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(p.metrics.probes.WithLabelValues(string(ProbeAdmitted))); got < 2 {
		t.Errorf("psc_admission_probes_total{outcome=Admitted} = %v, want at least 2", got)
	}

	deny.Store(true)
	waitVerdict(VerdictEnforced)

	p.Arm(false)
	if got := p.Facts().Verdict; got != VerdictIdle {
		t.Errorf("verdict after disarming %s, want Idle", got)
	}
	if got := testutil.ToFloat64(p.metrics.state.WithLabelValues(string(VerdictIdle))); got != 1 {
		t.Errorf("psc_admission_state{state=Idle} = %v, want 1", got)
	}
	if dryRuns.Load() == 0 {
		t.Error("the probe never sent a dry run")
	}
}

// TestProbeKeptWhileFeaturesUnknown: a reconcile that stopped before it knew the features (an
// invalid spec, or one the API server could not be asked to validate) leaves the probe and its
// policy as they are; one that knows no feature is enabled removes them.
func TestProbeKeptWhileFeaturesUnknown(t *testing.T) {
	notEnabled := []featureFacts{{Feature: feature("capabilities")}}
	for _, tc := range []struct {
		name        string
		facts       reconcileFacts
		wantDeletes int64
		wantArmed   bool
	}{
		{"spec not validated", reconcileFacts{MasterEnabled: true, Unchecked: true, Failed: &failure{ReasonSpecCheckFailed, "x"}, Features: notEnabled}, 0, true},
		{"invalid spec", reconcileFacts{MasterEnabled: true, Stalled: &failure{ReasonInvalidSpec, "x"}, Features: notEnabled}, 0, true},
		{"no feature enabled", reconcileFacts{MasterEnabled: true, Features: notEnabled}, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var deletes atomic.Int64
			c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(newScheme()).Build(), interceptor.Funcs{
				Delete: func(context.Context, client.WithWatch, client.Object, ...client.DeleteOption) error {
					deletes.Add(1)
					return nil
				},
			})
			p, err := NewAdmissionProbe(c, DefaultProbeNamespace, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			p.Arm(true)
			r := &Reconciler{Client: c, Probe: p}
			r.reconcileAdmissionProbe(context.Background(), nil, tc.facts, reconcile.Result{})
			if n := deletes.Load(); n != tc.wantDeletes {
				t.Errorf("%d deletes of the probe policy, want %d", n, tc.wantDeletes)
			}
			p.mu.Lock()
			armed := p.armed
			p.mu.Unlock()
			if armed != tc.wantArmed {
				t.Errorf("probe armed %v, want %v", armed, tc.wantArmed)
			}
		})
	}
}
