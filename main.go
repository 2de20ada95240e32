// Command manager runs the psc-operator. The offline commands (render, convert-psp) are in
// the psc command (cmd/psc): they link the CRD's in-process CEL validation, which the
// long-running manager does without.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/controllers"
	"github.com/podsecurity/psc-operator/templates"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "render" || os.Args[1] == "convert-psp") {
		fmt.Fprintf(os.Stderr, "error: %q is a command of psc now, not of the manager: psc %s (make build builds bin/psc)\n", os.Args[1], strings.Join(os.Args[1:], " "))
		os.Exit(2)
	}
	if err := runManager(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return scheme, nil
}

// managerFlags are the manager's command-line flags.
type managerFlags struct {
	metricsAddr, probeAddr string
	pprofAddr              string
	leaderElect            bool
	leaderElectionNS       string
	refresh                time.Duration
	probeNS                string
	probeInterval          time.Duration
	probeThreshold         int
	opts                   templates.Options
	zap                    zap.Options
}

// parseManagerFlags parses the manager's flags. Leader election is off by default, as in
// kubebuilder projects: a binary run by hand against a cluster reconciles at once, and the
// Deployment (config/manager, the Helm chart) turns it on.
func parseManagerFlags(args []string) (*managerFlags, error) {
	f := &managerFlags{opts: templates.DefaultOptions()}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		f.opts.OperatorNamespace = ns
	}
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "address the Prometheus metrics endpoint binds to; 0 disables it")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "address the health and readiness probes bind to")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "", "address Go's pprof endpoints (/debug/pprof/) bind to, for profiling memory and CPU; empty (the default) turns them off")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "use leader election, so that only one replica reconciles (on in the Deployment and the Helm chart)")
	fs.StringVar(&f.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election lease; it must exist (default: the operator's namespace)")
	fs.DurationVar(&f.refresh, "status-refresh-interval", 30*time.Second, "how often Gatekeeper's status (audit results) is read back without any change")
	fs.StringVar(&f.opts.OperatorNamespace, "operator-namespace", f.opts.OperatorNamespace, "namespace the operator runs in; always excluded from the policies (default from $POD_NAMESPACE)")
	fs.StringVar(&f.opts.GatekeeperNamespace, "gatekeeper-namespace", f.opts.GatekeeperNamespace, "namespace Gatekeeper runs in; always excluded from the policies")
	fs.StringVar(&f.probeNS, "admission-probe-namespace", controllers.DefaultProbeNamespace, "namespace of the admission probe (config/probe creates it with the probe's Role)")
	fs.DurationVar(&f.probeInterval, "admission-probe-interval", controllers.DefaultProbeInterval, "how often a dry-run probe pod verifies that admission denies violations (jittered); 0 turns the probe off")
	fs.IntVar(&f.probeThreshold, "admission-probe-failure-threshold", controllers.DefaultProbeThreshold, "consecutive failed probes before the status says admission is not enforced")
	ctrlconfig.RegisterFlags(fs)
	f.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if f.probeInterval < 0 || f.probeThreshold < 1 {
		return nil, fmt.Errorf("--admission-probe-interval must not be negative and --admission-probe-failure-threshold must be at least 1")
	}
	if f.refresh <= 0 {
		return nil, fmt.Errorf("--status-refresh-interval must be positive, got %s", f.refresh)
	}
	if f.leaderElectionNS == "" {
		f.leaderElectionNS = f.opts.OperatorNamespace
	}
	// The probe's namespace is excluded from the features while the API server enforces them.
	f.opts.ProbeNamespace = f.probeNS
	return f, nil
}

// runManager runs the operator until ctx is done.
func runManager(ctx context.Context, args []string) error {
	f, err := parseManagerFlags(args)
	if err != nil {
		return err
	}
	metricsAddr, probeAddr, leaderElect, leaderElectionNS, refresh, opts := f.metricsAddr, f.probeAddr, f.leaderElect, f.leaderElectionNS, f.refresh, f.opts

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&f.zap)))
	log := ctrl.Log.WithName("setup")

	scheme, err := newScheme()
	if err != nil {
		return fmt.Errorf("building scheme: %w", err)
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	if leaderElect {
		// Without this check a missing namespace leaves the manager retrying the lease
		// forever, without reconciling and without a clear error.
		if err := checkLeaseNamespace(ctx, cfg, leaderElectionNS, leaderElectionID); err != nil {
			return err
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        f.pprofAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        leaderElectionID,
		LeaderElectionNamespace: leaderElectionNS,
		// The cache holds our CR, CRDs without their schemas and our Gatekeeper objects,
		// trimmed; the reconciler reads Gatekeeper objects from it (NewGatekeeperReader).
		Cache: controllers.CacheOptions(),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	m, err := controllers.NewMetrics(metrics.Registry)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	r := &controllers.Reconciler{
		Client:          mgr.GetClient(),
		APIReader:       controllers.NewGatekeeperReader(mgr.GetCache(), mgr.GetAPIReader()),
		Recorder:        mgr.GetEventRecorder("psc-operator"),
		Options:         opts,
		RefreshInterval: refresh,
		Metrics:         m,
	}
	if f.probeInterval > 0 {
		probe, err := controllers.NewAdmissionProbe(mgr.GetClient(), f.probeNS, metrics.Registry)
		if err != nil {
			return fmt.Errorf("creating the admission probe: %w", err)
		}
		probe.Interval, probe.ConfirmAfter, probe.Threshold = f.probeInterval, f.probeInterval/3, f.probeThreshold
		r.Probe = probe
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}

	log.Info("Starting manager", "operatorNamespace", opts.OperatorNamespace, "gatekeeperNamespace", opts.GatekeeperNamespace,
		"statusRefreshInterval", refresh.String(), "admissionProbeNamespace", f.probeNS, "admissionProbeInterval", f.probeInterval.String())
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}
