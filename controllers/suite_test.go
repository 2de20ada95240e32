package controllers

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// testEnv is one control plane (kube-apiserver + etcd) with the operator running against it.
type testEnv struct {
	env    *envtest.Environment
	cfg    *rest.Config
	client client.Client // the test's own client, not intercepted
	// writes counts the operator's writes; conflicts makes its next N applies fail with 409.
	writes    atomic.Int64
	conflicts atomic.Int64
	// applies counts the operator's patches of Gatekeeper objects (server-side applies), a
	// subset of writes; a reconcile that finds everything in place makes none.
	applies atomic.Int64
	// applyLog records the operator's applies of Gatekeeper objects, as "Kind/name", in order.
	applyLog applyLog
	// reads counts the operator's GET requests other than watches (cached reads make none).
	reads  atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
	// newProbe, when set, gives the operator an admission probe (probe_envtest_test.go).
	newProbe func(client.Client) *AdmissionProbe
}

// applyLog is the order in which the operator applied Gatekeeper objects.
type applyLog struct {
	mu      sync.Mutex
	entries []string
}

func (l *applyLog) add(entry string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, entry)
}

// take returns the entries recorded so far and starts over.
func (l *applyLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.entries
	l.entries = nil
	return out
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// gatekeeperCRDDir finds Gatekeeper's CRDs in the module cache (the module is a dependency).
func gatekeeperCRDDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/open-policy-agent/gatekeeper/v3").Output()
	if err != nil {
		t.Fatalf("locating the gatekeeper module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "charts", "gatekeeper", "crds")
}

// startEnv starts a control plane with our CRD, plus Gatekeeper's CRDs when withGatekeeper,
// and runs the operator's manager against it.
func startEnv(t testing.TB, withGatekeeper bool) *testEnv {
	t.Helper()
	return startEnvWithProbe(t, withGatekeeper, nil)
}

// startEnvWithProbe is startEnv with an admission probe made by newProbe (nil: none).
func startEnvWithProbe(t testing.TB, withGatekeeper bool, newProbe func(client.Client) *AdmissionProbe) *testEnv {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver and etcd (make test-assets)")
	}
	if os.Getenv("PSC_TEST_VERBOSE") != "" {
		logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	} else {
		logf.SetLogger(logr.Discard())
	}
	paths := []string{filepath.Join("..", "config", "crd", "bases")}
	if withGatekeeper {
		paths = append(paths, gatekeeperCRDDir(t))
	}
	te := &testEnv{env: &envtest.Environment{CRDDirectoryPaths: paths, ErrorIfCRDPathMissing: true}, done: make(chan struct{}), newProbe: newProbe}
	cfg, err := te.env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	te.cfg = cfg
	t.Cleanup(func() {
		te.stopManager()
		if err := te.env.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	te.client, err = client.New(cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		t.Fatal(err)
	}
	te.startManager(t)
	return te
}

func (te *testEnv) startManager(t testing.TB) {
	t.Helper()
	cfg := rest.CopyConfig(te.cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodGet && req.URL.Query().Get("watch") != "true" {
				te.reads.Add(1)
			}
			return rt.RoundTrip(req)
		})
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 newScheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  CacheOptions(),
		// Each test starts its own manager in the same process.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
		NewClient: func(cfg *rest.Config, opts client.Options) (client.Client, error) {
			c, err := client.NewWithWatch(cfg, opts)
			if err != nil {
				return nil, err
			}
			return interceptor.NewClient(c, te.interceptors()), nil
		},
	})
	if err != nil {
		t.Fatalf("creating manager: %v", err)
	}
	r := &Reconciler{
		Client:          mgr.GetClient(),
		APIReader:       NewGatekeeperReader(mgr.GetCache(), mgr.GetAPIReader()),
		Recorder:        mgr.GetEventRecorder("psc-operator"),
		Options:         templates.DefaultOptions(),
		RefreshInterval: time.Second,
	}
	if te.newProbe != nil {
		r.Probe = te.newProbe(mgr.GetClient())
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	te.cancel = cancel
	go func() {
		defer close(te.done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "manager stopped with error: %v\n", err)
		}
	}()
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func (te *testEnv) stopManager() {
	if te.cancel != nil {
		te.cancel()
		<-te.done
		te.cancel = nil
	}
}

// interceptors count every write the operator makes and inject conflicts on demand.
func (te *testEnv) interceptors() interceptor.Funcs {
	return interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			te.writes.Add(1)
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			te.writes.Add(1)
			return c.Update(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			te.writes.Add(1)
			return c.Delete(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			te.writes.Add(1)
			if u, ok := obj.(*unstructured.Unstructured); ok {
				te.applies.Add(1)
				te.applyLog.add(u.GetKind() + "/" + u.GetName())
			}
			if _, ok := obj.(*unstructured.Unstructured); ok && te.conflicts.Load() > 0 {
				te.conflicts.Add(-1)
				return apierrors.NewConflict(schema.GroupResource{Group: obj.GetObjectKind().GroupVersionKind().Group, Resource: "injected"},
					obj.GetName(), fmt.Errorf("injected by the test"))
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			te.writes.Add(1)
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			te.writes.Add(1)
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	}
}
