// Command manager runs the psc-operator, renders a PodSecurityConstraints manifest into the
// Gatekeeper objects the operator would apply (`manager render -f cr.yaml`), or converts
// PodSecurityPolicy objects into a PodSecurityConstraints (`manager convert-psp -f psp.yaml`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/controllers"
	"github.com/podsecurity/psc-operator/templates"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "render" {
		os.Exit(runRender(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "convert-psp" {
		os.Exit(runConvertPSP(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	if err := runManager(); err != nil {
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

func runManager() error {
	var (
		metricsAddr, probeAddr string
		leaderElect            bool
		leaderElectionNS       string
		refresh                time.Duration
	)
	opts := templates.DefaultOptions()
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		opts.OperatorNamespace = ns
	}
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address the Prometheus metrics endpoint binds to; 0 disables it")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address the health and readiness probes bind to")
	flag.BoolVar(&leaderElect, "leader-elect", true, "use leader election, so that only one replica reconciles")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election lease (default: the operator's namespace)")
	flag.DurationVar(&refresh, "status-refresh-interval", 30*time.Second, "how often Gatekeeper's status (audit results) is read back without any change")
	flag.StringVar(&opts.OperatorNamespace, "operator-namespace", opts.OperatorNamespace, "namespace the operator runs in; always excluded from the policies (default from $POD_NAMESPACE)")
	flag.StringVar(&opts.GatekeeperNamespace, "gatekeeper-namespace", opts.GatekeeperNamespace, "namespace Gatekeeper runs in; always excluded from the policies")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if refresh <= 0 {
		return fmt.Errorf("--status-refresh-interval must be positive, got %s", refresh)
	}

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	scheme, err := newScheme()
	if err != nil {
		return fmt.Errorf("building scheme: %w", err)
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	if leaderElectionNS == "" {
		leaderElectionNS = opts.OperatorNamespace
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "psc-operator.policy.podsecurity.dev",
		LeaderElectionNamespace: leaderElectionNS,
		// Gatekeeper objects are read uncached (Reconciler.APIReader); the cache only holds
		// our CR, CRD metadata and the watched Gatekeeper kinds.
		Client: client.Options{},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	validator, err := validation.New()
	if err != nil {
		return fmt.Errorf("loading CRD schema: %w", err)
	}
	m, err := controllers.NewMetrics(metrics.Registry)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	r := &controllers.Reconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		Recorder:        mgr.GetEventRecorder("psc-operator"),
		Validator:       validator,
		Options:         opts,
		RefreshInterval: refresh,
		Metrics:         m,
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
		"statusRefreshInterval", refresh.String())
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}
