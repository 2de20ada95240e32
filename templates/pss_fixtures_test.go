package templates_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/profiles"
	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// reviewer is what the oracle tests need of a policy engine.
type reviewer interface {
	Review(context.Context, policytest.Request) ([]policytest.Violation, error)
}

// oracleEngines are the engines held to Pod Security Admission's verdicts: every engine
// configuration the templates carry (Gatekeeper's default, CEL first; Rego forced).
var oracleEngines = func() []struct {
	name string
	load func(context.Context, []*unstructured.Unstructured) (reviewer, error)
} {
	var out []struct {
		name string
		load func(context.Context, []*unstructured.Unstructured) (reviewer, error)
	}
	for _, engine := range policytest.Engines() {
		out = append(out, struct {
			name string
			load func(context.Context, []*unstructured.Unstructured) (reviewer, error)
		}{name: string(engine), load: func(ctx context.Context, objs []*unstructured.Unstructured) (reviewer, error) {
			return policytest.NewWithEngine(ctx, engine, objs)
		}})
	}
	return out
}()

// presetReviewer validates, defaults and renders {profile, profileVersion} like the operator
// does and loads the result into the engine.
func presetReviewer(t testing.TB, load func(context.Context, []*unstructured.Unstructured) (reviewer, error), level psaapi.Level, minor int) reviewer {
	t.Helper()
	ctx := context.Background()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]interface{}{
		"apiVersion": "policy.podsecurity.dev/v1alpha1",
		"kind":       "PodSecurityConstraints",
		"metadata":   map[string]interface{}{"name": "cluster"},
		"spec":       map[string]interface{}{"profile": string(level), "profileVersion": fmt.Sprintf("v1.%d", minor)},
	}
	psc, errs := v.DefaultAndValidate(ctx, obj)
	if len(errs) > 0 {
		t.Fatalf("preset spec is invalid: %v", errs.ToAggregate())
	}
	rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	r, err := load(ctx, rendered.Objects(templates.RoleTemplate, templates.RoleConstraint))
	if err != nil {
		t.Fatalf("loading the %s v1.%d preset: %v", level, minor, err)
	}
	return r
}

// ourVerdict reviews a pod creation and returns the deny messages.
func ourVerdict(t testing.TB, r reviewer, pod map[string]interface{}) []string {
	t.Helper()
	got, err := r.Review(context.Background(), policytest.Request{Object: pod, Namespace: "default"})
	if err != nil {
		t.Fatalf("review: %v", err)
	}
	var msgs []string
	for _, v := range policytest.Denied(got) {
		msgs = append(msgs, v.Message)
	}
	sort.Strings(msgs)
	return msgs
}

var psaEvaluator = sync.OnceValues(func() (psapolicy.Evaluator, error) {
	return psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
})

// psaVerdict is Pod Security Admission's decision and its reasons.
func psaVerdict(t testing.TB, level psaapi.Level, minor int, pod *corev1.Pod) (bool, string) {
	t.Helper()
	ev, err := psaEvaluator()
	if err != nil {
		t.Fatal(err)
	}
	res := psapolicy.AggregateCheckResults(ev.EvaluatePod(psaapi.LevelVersion{Level: level, Version: psaapi.MajorMinorVersion(1, minor)}, &pod.ObjectMeta, &pod.Spec))
	return res.Allowed, res.ForbiddenDetail()
}

func psaModuleDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/pod-security-admission").Output()
	if err != nil {
		t.Fatalf("locating k8s.io/pod-security-admission: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("k8s.io/pod-security-admission has no module directory; run go mod download")
	}
	return dir
}

// fixtureMinors are the versions whose fixtures are replayed: the oldest and the latest the
// presets know, and the versions just before changes of the standards (v1.29 sysctls, v1.31
// SELinux, v1.34 probe hosts, v1.35 user namespaces) are covered by v1.29 and v1.34.
var fixtureMinors = []int{profiles.OldestMinor, 29, 34, profiles.LatestMinor}

// TestPSAFixtures: every fixture pod of Pod Security Admission's own test data, at the
// versions above and at both levels, gets PSA's verdict (the directory it is in,
// confirmed with the library) from the preset of that level and version, on every engine.
func TestPSAFixtures(t *testing.T) {
	root := filepath.Join(psaModuleDir(t), "test", "testdata")
	for _, engine := range oracleEngines {
		t.Run(engine.name, func(t *testing.T) {
			for _, level := range []psaapi.Level{psaapi.LevelBaseline, psaapi.LevelRestricted} {
				for _, minor := range fixtureMinors {
					t.Run(fmt.Sprintf("%s/v1.%d", level, minor), func(t *testing.T) {
						r := presetReviewer(t, engine.load, level, minor)
						counts := map[string]int{}
						for _, verdict := range []string{"pass", "fail"} {
							files, err := filepath.Glob(filepath.Join(root, string(level), fmt.Sprintf("v1.%d", minor), verdict, "*.yaml"))
							if err != nil {
								t.Fatal(err)
							}
							for _, file := range files {
								counts[verdict]++
								checkFixture(t, r, level, minor, file, verdict == "pass")
							}
						}
						if counts["pass"] == 0 || counts["fail"] == 0 {
							t.Fatalf("no fixtures found under %s (pass %d, fail %d)", root, counts["pass"], counts["fail"])
						}
						t.Logf("%s v1.%d: %d pass and %d fail fixtures agree with Pod Security Admission", level, minor, counts["pass"], counts["fail"])
					})
				}
			}
		})
	}
}

func checkFixture(t *testing.T, r reviewer, level psaapi.Level, minor int, file string, wantAllowed bool) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(data, pod); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	defaultVolumeSources(pod)
	if allowed, reason := psaVerdict(t, level, minor, pod); allowed != wantAllowed {
		t.Fatalf("%s: the library says allowed=%v (%s), the directory says %v", file, allowed, reason, wantAllowed)
	}
	denied := ourVerdict(t, r, podToMap(t, pod))
	if wantAllowed && len(denied) > 0 {
		t.Errorf("%s: PSA admits, the %s v1.%d preset denies: %q", filepath.Base(file), level, minor, denied)
	}
	if !wantAllowed && len(denied) == 0 {
		_, reason := psaVerdict(t, level, minor, pod)
		t.Errorf("%s: PSA denies (%s), the %s v1.%d preset admits", filepath.Base(file), reason, level, minor)
	}
}

// defaultVolumeSources does what the API server's defaulting does before any admission
// plugin sees the pod: a volume without a source becomes an emptyDir. Pod Security Admission's
// own fixture tests create the pods through an API server.
func defaultVolumeSources(pod *corev1.Pod) {
	for i := range pod.Spec.Volumes {
		if equality.Semantic.DeepEqual(pod.Spec.Volumes[i].VolumeSource, corev1.VolumeSource{}) {
			pod.Spec.Volumes[i].EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
	}
}

// podToMap gives the pod in its JSON form, as the API server sends it to the webhook.
func podToMap(t testing.TB, pod *corev1.Pod) map[string]interface{} {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}
