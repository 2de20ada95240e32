//go:build e2e

// Package e2e holds the end-to-end tests of psc-operator: the operator runs in this test
// binary (a controller-runtime manager wired like main.go) against a real kube-apiserver with a
// real OPA Gatekeeper, started by hack/cluster-up.sh. Run them with `make test-e2e`, or, with the
// cluster already up (hack/cluster-up.sh):
//
//	KUBECONFIG=$PWD/bin/local/kubeconfig PSC_KUBECTL=$PWD/bin/k8s/v1.36.2/kubectl \
//	  go test -tags e2e -count=1 -v ./e2e/...
//
// The scenarios share one cluster and the one PodSecurityConstraints object it may have, so
// they run one after the other (no t.Parallel), in file order s1_..s9_; each starts from a
// cluster without the CR, with Gatekeeper running and the operator up, and leaves it that way
// (deleting the CR and waiting for the operator's finalizer to prune what it generated).
//
//	s1 TestFeatures                         every feature: a denied and an allowed case of its cases.yaml
//	s2 TestEnforcementActions               warn (warning returned) and dryrun (audit result in the status)
//	s3 TestExclusions                       excludedNamespaces and exemptImages, global and per feature
//	s4 TestEphemeralContainers              pods/ephemeralcontainers (kubectl debug)
//	s5 TestUpdatesOfExistingPods            label/finalizer updates of pods that predate the policies
//	s6 TestStatusFullSample                 the full sample: convergence time, kubectl get psc, audit
//	s7 TestGatekeeperStopped                Gatekeeper stopped and started again
//	   TestGatekeeperNotInstalled           operator started without Gatekeeper's CRDs
//	   TestGatekeeperUninstalledWhileRunning  Gatekeeper's CRDs deleted under a running operator
//	s8 TestWorkloads                        every workload kind judged at kubectl apply (ExpansionTemplates)
//	s9 TestDrift                            generated objects deleted or edited by hand
//	s10 TestHelmChartInstallsServerSide      the Helm chart through helm's and the API server's dry runs
//	s11 TestAdmissionGatekeeperKilled        Gatekeeper's process killed, webhook still registered:
//	                                        AdmissionNotEnforced within 60 s, Ready again within 60 s
//	   TestAdmissionGatekeeperUninstalled   the same with Gatekeeper's webhook configuration deleted
//	s12 TestControllerManager                the local cluster: Deployment -> ReplicaSet -> Pod, garbage
//	                                        collection, ServiceAccounts and tokens
//	   TestGatekeeperMutation               the local cluster: Gatekeeper's mutating webhook applies an Assign
//	s13 TestEngine                          which engine (CEL or Rego) Gatekeeper used, from the shape of a denial
//	s14 TestDefaults                        setDefaults: a bare pod completed by Gatekeeper's mutation,
//	                                        explicit violations denied, a bare Deployment's pods completed,
//	                                        ephemeral containers (kubectl debug) checked and never mutated,
//	                                        defaults withheld for a feature with exemptImages
//	s15 TestConvertedPSPs                   the PSP tutorial policies converted by convert-psp, enforced
//	   TestRestrictedProfile                spec.profile: restricted end to end
//	s16 TestValidatingAdmissionPolicy        spec.validatingAdmissionPolicy: policies and bindings generated,
//	                                        Gatekeeper killed and uninstalled -> the API server still denies,
//	                                        EnforcedByAPIServerOnly; switched off -> policies removed
//	s17 TestPolicyLayout                    one template and one constraint per enforcement action
//	   TestUpgradeFromPerFeatureLayout      the per-feature templates of earlier releases pruned on upgrade
//	s18 TestMasterSwitchQuickly             the master switch off and on again within a second
//
// Environment: KUBECONFIG (default bin/local/kubeconfig), PSC_KUBECTL (default the kubectl under
// bin/k8s), PSC_E2E_OPERATOR_LOG (where the in-process operator logs; default a file in $TMPDIR,
// printed at the start). PSC_CLI (bin/psc) is used by the render and convert-psp tests, PSC_GATOR by gator_test.go, PSC_HELM by s10_helm_test.go.
package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

var (
	// repoRoot is the repository (the tests run in e2e/).
	repoRoot string
	// kubectlPath is $PSC_KUBECTL, or the kubectl hack/build-kube.sh built.
	kubectlPath string
	// kubeconfigPath is $KUBECONFIG, or the one hack/cluster-up.sh writes.
	kubeconfigPath string

	restConfig *rest.Config
	scheme     *runtime.Scheme
	// k8s is an uncached controller-runtime client for the tests' own reads and writes.
	k8s client.Client
	// clientset is client-go's typed client; its responses' warnings go to warnings.
	clientset *kubernetes.Clientset
	warnings  = &warningRecorder{}

	// runID makes this run's namespace names unique: a deleted namespace stays Terminating
	// until the namespace controller has emptied it.
	runID string

	// op is the operator under test, running in this process.
	op *operator
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup failed: %v\n", err)
		return 1
	}
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e teardown failed: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func setup() error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	repoRoot = filepath.Dir(wd)
	runID = randomSuffix(5)

	kubeconfigPath = os.Getenv("KUBECONFIG")
	if kubeconfigPath == "" {
		kubeconfigPath = filepath.Join(repoRoot, "bin", "local", "kubeconfig")
	}
	if _, err := os.Stat(kubeconfigPath); err != nil {
		return fmt.Errorf("no kubeconfig at %s (%v): start the local cluster with hack/cluster-up.sh, or run `make test-e2e`", kubeconfigPath, err)
	}
	kubectlPath = os.Getenv("PSC_KUBECTL")
	if kubectlPath == "" {
		matches, _ := filepath.Glob(filepath.Join(repoRoot, "bin", "k8s", "*", "kubectl"))
		if len(matches) == 0 {
			return fmt.Errorf("PSC_KUBECTL is not set and no kubectl was built under bin/k8s (make test-assets)")
		}
		kubectlPath = matches[len(matches)-1]
	}

	restConfig, err = clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return fmt.Errorf("loading %s: %w", kubeconfigPath, err)
	}
	restConfig.QPS, restConfig.Burst = 100, 200
	scheme = runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	testCfg := rest.CopyConfig(restConfig)
	testCfg.WarningHandler = warnings
	k8s, err = client.New(testCfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	clientset, err = kubernetes.NewForConfig(testCfg)
	if err != nil {
		return fmt.Errorf("creating clientset: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := clientset.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("the API server at %s is not reachable: %w (is the local cluster up? hack/cluster-up.sh)", restConfig.Host, err)
	}
	// A previous run that was interrupted may have left Gatekeeper stopped or without CRDs:
	// every scenario expects it running. The command is idempotent and quick when it is.
	if out, err := clusterScript(ctx, "gatekeeper-start"); err != nil {
		return fmt.Errorf("hack/cluster-up.sh gatekeeper-start: %v\n%s", err, out)
	}
	if err := installCRD(ctx); err != nil {
		return err
	}
	// The admission probe's namespace, as config/default installs it.
	if out, err := kubectl(ctx, "apply", "--server-side", "--force-conflicts", "--field-manager=psc-e2e", "-f",
		filepath.Join(repoRoot, "config", "probe", "probe.yaml")); err != nil {
		return fmt.Errorf("installing the admission probe's namespace: %v\n%s", err, out)
	}
	// This cluster runs no kube-controller-manager, whose quota controller fills a quota's
	// status; without it the zero-pod quota limits nothing. Fill it as that controller would,
	// so the probe meets what it meets on a real cluster: "exceeded quota" after the webhooks.
	if out, err := kubectl(ctx, "-n", "psc-probe", "patch", "resourcequota", "psc-admission-probe", "--subresource=status", "--type=merge",
		"-p", `{"status":{"hard":{"pods":"0"},"used":{"pods":"0"}}}`); err != nil {
		return fmt.Errorf("filling the probe quota's status: %v\n%s", err, out)
	}

	logPath := os.Getenv("PSC_E2E_OPERATOR_LOG")
	if logPath == "" {
		logPath = filepath.Join(os.TempDir(), fmt.Sprintf("psc-e2e-operator-%s.log", runID))
	}
	if err := initOperatorLog(logPath); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: run %s, API server %s, operator log %s\n", runID, restConfig.Host, logPath)

	op, err = startOperator()
	if err != nil {
		return err
	}
	// Leftovers of an interrupted run: the CR (its finalizer needs the operator) and pods in
	// the namespaces of earlier runs, which Gatekeeper's audit would otherwise report.
	if err := deleteCRAndWait(ctx); err != nil {
		return fmt.Errorf("removing a PodSecurityConstraints left by an earlier run: %w", err)
	}
	return deleteE2EPods(ctx, "")
}

func teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []string
	if op != nil && op.running() {
		if err := deleteCRAndWait(ctx); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := deleteE2EPods(ctx, ""); err != nil {
		errs = append(errs, err.Error())
	}
	if op != nil {
		if err := op.stop(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// installCRD applies the PodSecurityConstraints CRD from config/crd/bases and waits for it.
func installCRD(ctx context.Context) error {
	dir := filepath.Join(repoRoot, "config", "crd", "bases")
	if out, err := kubectl(ctx, "apply", "--server-side", "--force-conflicts", "--field-manager=psc-e2e", "-f", dir); err != nil {
		return fmt.Errorf("installing the CRD: %v\n%s", err, out)
	}
	if out, err := kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "-f", dir); err != nil {
		return fmt.Errorf("waiting for the CRD: %v\n%s", err, out)
	}
	return nil
}

// kubectl runs $PSC_KUBECTL against the test cluster and returns its combined output.
func kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, kubectlPath, append([]string{"--kubeconfig", kubeconfigPath}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// clusterScript runs hack/cluster-up.sh with a subcommand (gatekeeper-stop, ...).
func clusterScript(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "hack", "cluster-up.sh"), args...)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func randomSuffix(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}
