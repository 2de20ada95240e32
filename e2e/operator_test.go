//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/podsecurity/psc-operator/controllers"
	"github.com/podsecurity/psc-operator/templates"
)

// refreshInterval is the operator's --status-refresh-interval in these tests.
const refreshInterval = 2 * time.Second

// operatorLogPath is where the in-process operator logs (JSON lines, debug level).
var operatorLogPath string

// initOperatorLog sends controller-runtime's log to a file: the operator's log would drown the
// test output, and a failing test prints the relevant tail of it.
func initOperatorLog(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("creating the operator log: %w", err)
	}
	operatorLogPath = path
	logf.SetLogger(zap.New(zap.WriteTo(f), zap.Level(zapcore.DebugLevel)))
	return nil
}

// operator is one run of the operator's manager in this process, wired like main.go.
type operator struct {
	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time

	mu  sync.Mutex
	err error // what mgr.Start returned
}

// startOperator starts a new manager with the Reconciler. Each start is a new manager, so that
// a test can stop the operator and start it again (e.g. after removing Gatekeeper's CRDs).
func startOperator() (*operator, error) {
	return startOperatorWith(refreshInterval)
}

// startOperatorWith starts the operator with another status refresh interval.
func startOperatorWith(refresh time.Duration) (*operator, error) {
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 logf.Log.WithName("operator"),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
		Cache:                  controllers.CacheOptions(),
		// A restarted operator registers a controller with the same name again in this process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	// A registry per run: the gauges may be registered only once per registry.
	metrics, err := controllers.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	r := &controllers.Reconciler{
		Client:          mgr.GetClient(),
		APIReader:       controllers.NewGatekeeperReader(mgr.GetCache(), mgr.GetAPIReader()),
		Recorder:        mgr.GetEventRecorder("psc-operator"),
		Options:         templates.DefaultOptions(),
		RefreshInterval: refresh,
		Metrics:         metrics,
	}
	// The admission probe with its production timing (15 s, jittered; 2 failures flip), so the
	// 60-second budgets of s8_admission_test.go hold for the defaults users get.
	if r.Probe, err = controllers.NewAdmissionProbe(mgr.GetClient(), controllers.DefaultProbeNamespace, prometheus.NewRegistry()); err != nil {
		return nil, fmt.Errorf("creating the admission probe: %w", err)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up controller: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := &operator{cancel: cancel, done: make(chan struct{}), started: time.Now()}
	go func() {
		defer close(o.done)
		err := mgr.Start(ctx)
		o.mu.Lock()
		o.err = err
		o.mu.Unlock()
	}()
	logf.Log.WithName("e2e").Info("Started operator")
	return o, nil
}

// running reports whether the manager is still running.
func (o *operator) running() bool {
	select {
	case <-o.done:
		return false
	default:
		return true
	}
}

// exitError explains why the manager stopped on its own, or is nil while it runs.
func (o *operator) exitError() error {
	if o.running() {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		return errors.New("the operator's manager returned without an error")
	}
	return fmt.Errorf("the operator's manager stopped: %w", o.err)
}

// stop stops the manager and waits for it.
func (o *operator) stop() error {
	o.cancel()
	select {
	case <-o.done:
	case <-time.After(30 * time.Second):
		return errors.New("the operator did not stop within 30s")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil && !errors.Is(o.err, context.Canceled) {
		return fmt.Errorf("the operator stopped with an error: %w", o.err)
	}
	logf.Log.WithName("e2e").Info("Stopped operator")
	return nil
}

// operatorLogLines returns the operator's log lines that contain every one of substrings.
func operatorLogLines(substrings ...string) []string {
	f, err := os.Open(operatorLogPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
next:
	for sc.Scan() {
		line := sc.Text()
		for _, s := range substrings {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// operatorLogTail is the last n lines of the operator's log.
func operatorLogTail(n int) string {
	lines := operatorLogLines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// operatorPanics are the log lines of reconciler panics controller-runtime recovered.
func operatorPanics() []string {
	return append(operatorLogLines("[recovered]"), operatorLogLines("Observed a panic")...)
}
