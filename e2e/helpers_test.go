//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

const (
	// gatekeeperDenial starts every denial by Gatekeeper's validating webhook.
	gatekeeperDenial = `admission webhook "validation.gatekeeper.sh" denied the request`
	// e2eLabel marks the namespaces this suite creates, so that their pods can be cleaned up.
	e2eLabel = "e2e.podsecurity.dev/run"

	// enforceTimeout bounds the wait for a feature to reach Enforced after a spec change.
	enforceTimeout = 60 * time.Second
	// auditTimeout bounds the wait for Gatekeeper's audit (every 10 s) to reach the CR.
	auditTimeout = 60 * time.Second
)

// ---------------------------------------------------------------------------------------------
// Warnings

// warningRecorder collects the warnings of API responses (rest.Config.WarningHandler).
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(code int, agent, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// take returns the warnings collected since the last call and forgets them.
func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

// ---------------------------------------------------------------------------------------------
// Waiting

// eventually polls cond every interval until it reports done or timeout passes; then it fails
// the test with what and cond's last explanation. It returns how long it took.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	last := ""
	for {
		done, why := cond()
		if done {
			return time.Since(start)
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		}
		if err := op.exitError(); err != nil {
			t.Fatalf("while waiting for %s: %v; last state: %s", what, err, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------------------------
// The PodSecurityConstraints object

var crKey = types.NamespacedName{Name: v1alpha1.ClusterName}

// getCR reads the CR; nil when it does not exist.
func getCR(ctx context.Context) (*v1alpha1.PodSecurityConstraints, error) {
	cr := &v1alpha1.PodSecurityConstraints{}
	if err := k8s.Get(ctx, crKey, cr); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return cr, nil
}

func mustGetCR(t testing.TB) *v1alpha1.PodSecurityConstraints {
	t.Helper()
	cr, err := getCR(context.Background())
	if err != nil {
		t.Fatalf("reading the PodSecurityConstraints: %v", err)
	}
	if cr == nil {
		t.Fatal("the PodSecurityConstraints does not exist")
	}
	return cr
}

// setSpec creates the CR with spec, or replaces the spec of the existing one, and returns the
// generation the operator must observe. spec is in its JSON form, as in cases.yaml.
func setSpec(t testing.TB, spec map[string]interface{}) int64 {
	t.Helper()
	ctx := context.Background()
	var gen int64
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("PodSecurityConstraints"))
		err := k8s.Get(ctx, crKey, u)
		switch {
		case apierrors.IsNotFound(err):
			u = &unstructured.Unstructured{Object: map[string]interface{}{
				"apiVersion": v1alpha1.GroupVersion.String(),
				"kind":       "PodSecurityConstraints",
				"metadata":   map[string]interface{}{"name": v1alpha1.ClusterName},
				"spec":       deepCopyMap(spec),
			}}
			if err := k8s.Create(ctx, u); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if !u.GetDeletionTimestamp().IsZero() {
				return fmt.Errorf("the PodSecurityConstraints is being deleted")
			}
			u.Object["spec"] = deepCopyMap(spec)
			if err := k8s.Update(ctx, u); err != nil {
				return err
			}
		}
		gen = u.GetGeneration()
		return nil
	})
	if err != nil {
		t.Fatalf("setting the PodSecurityConstraints spec to %s: %v", compactJSON(spec), err)
	}
	return gen
}

// applyManifest creates or replaces the CR from a YAML manifest (metadata.name must be cluster).
func applyManifest(t testing.TB, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]interface{}{}
	if err := sigsyaml.Unmarshal(data, &obj); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	spec, _ := obj["spec"].(map[string]interface{})
	return setSpec(t, spec)
}

func featureStatus(cr *v1alpha1.PodSecurityConstraints, name string) (v1alpha1.FeatureStatus, bool) {
	for _, f := range cr.Status.Features {
		if f.Name == name {
			return f, true
		}
	}
	return v1alpha1.FeatureStatus{}, false
}

// observed: the operator has computed the status for generation gen (Ready's
// observedGeneration; status.observedGeneration only moves once Ready or failed for good).
func observed(cr *v1alpha1.PodSecurityConstraints, gen int64) bool {
	ready := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionReady)
	return cr.Generation == gen && ready != nil && ready.ObservedGeneration == gen
}

// describeCR summarises the CR's status for failure messages.
func describeCR(cr *v1alpha1.PodSecurityConstraints) string {
	if cr == nil {
		return "the PodSecurityConstraints does not exist"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d, observedGeneration %d, enabled %d, enforced %d, violations %d",
		cr.Generation, cr.Status.ObservedGeneration, cr.Status.EnabledFeatures, cr.Status.EnforcedFeatures, cr.Status.TotalViolations)
	for _, c := range cr.Status.Conditions {
		fmt.Fprintf(&b, "; %s=%s (%s, gen %d): %s", c.Type, c.Status, c.Reason, c.ObservedGeneration, c.Message)
	}
	for _, f := range cr.Status.Features {
		if f.State == v1alpha1.FeatureDisabled {
			continue
		}
		fmt.Fprintf(&b, "; %s=%s (%s)", f.Name, f.State, f.Message)
	}
	return b.String()
}

// waitFeature waits until the operator has observed generation gen and feature is in state.
func waitFeature(t testing.TB, gen int64, feature string, state v1alpha1.FeatureState) time.Duration {
	t.Helper()
	return eventually(t, enforceTimeout, fmt.Sprintf("feature %s to be %s at generation %d", feature, state, gen), func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		fs, ok := featureStatus(cr, feature)
		return observed(cr, gen) && ok && fs.State == state, describeCR(cr)
	})
}

// waitReady waits until Ready is True for generation gen, with every enabled feature Enforced.
func waitReady(t testing.TB, gen int64, timeout time.Duration) time.Duration {
	t.Helper()
	return eventually(t, timeout, fmt.Sprintf("Ready=True at generation %d", gen), func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		return isReady(cr, gen), describeCR(cr)
	})
}

func isReady(cr *v1alpha1.PodSecurityConstraints, gen int64) bool {
	ready := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionReady)
	return observed(cr, gen) && ready.Status == metav1.ConditionTrue && cr.Status.EnforcedFeatures == cr.Status.EnabledFeatures
}

// deleteCRAndWait deletes the CR, waits for the operator's finalizer to let it go, and checks
// that no generated object is left.
func deleteCRAndWait(ctx context.Context) error {
	cr := &v1alpha1.PodSecurityConstraints{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ClusterName}}
	if err := k8s.Delete(ctx, cr); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the PodSecurityConstraints: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cur, err := getCR(ctx)
		if err == nil && cur == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the PodSecurityConstraints was not removed within 60s (finalizers %v, err %v)", finalizersOf(cur), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	left, err := generatedObjects(ctx)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("deleting the PodSecurityConstraints left generated objects behind: %v", left)
	}
	return nil
}

func finalizersOf(cr *v1alpha1.PodSecurityConstraints) []string {
	if cr == nil {
		return nil
	}
	return cr.Finalizers
}

// cleanCR is the end of every scenario: the CR is deleted and everything generated is gone.
func cleanCR(t testing.TB) {
	t.Helper()
	if err := op.exitError(); err != nil {
		t.Errorf("the operator is not running at the end of the test: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := deleteCRAndWait(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// startScenario checks the operator runs and there is no CR yet, and registers the cleanup.
func startScenario(t *testing.T) {
	t.Helper()
	if err := op.exitError(); err != nil {
		t.Fatalf("the operator is not running: %v", err)
	}
	if cr, err := getCR(context.Background()); err != nil || cr != nil {
		t.Fatalf("a scenario must start without a PodSecurityConstraints (err %v): %s", err, describeCR(cr))
	}
	warnings.take()
	panicsBefore := len(operatorPanics())
	t.Cleanup(func() {
		if p := operatorPanics(); len(p) > panicsBefore {
			t.Errorf("the operator's reconciler panicked (recovered by controller-runtime):\n%s", strings.Join(p[panicsBefore:], "\n"))
		}
		if t.Failed() {
			t.Logf("operator log (last 25 lines of %s):\n%s", operatorLogPath, operatorLogTail(25))
		}
		cleanCR(t)
	})
}

// ---------------------------------------------------------------------------------------------
// Gatekeeper objects

// policyTemplate is the one ConstraintTemplate that holds every feature's policy.
func policyTemplate() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(templates.TemplateGVK)
	u.SetName(templates.PolicyTemplateName)
	return u
}

// policyConstraint is the constraint of kind PSCPodSecurity named name.
func policyConstraint(name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
	u.SetName(name)
	return u
}

// wantConstraintName is the constraint that must enforce feature under spec (in its JSON form),
// worked out here from the documented rule rather than by the operator's code: the feature's
// own constraint (psc-<feature-kebab>) when it has excludedNamespaces of its own, else
// psc-<action> for its action (its own, else the spec's, else deny).
func wantConstraintName(t testing.TB, spec map[string]interface{}, feature string) string {
	t.Helper()
	f, ok := templates.FeatureByName(feature)
	if !ok {
		t.Fatalf("no feature %q", feature)
	}
	block, _ := spec[feature].(map[string]interface{})
	if excluded, _ := block["excludedNamespaces"].([]interface{}); len(excluded) > 0 {
		return f.ObjectName()
	}
	action := "deny"
	if a, _ := spec["enforcementAction"].(string); a != "" {
		action = a
	}
	if a, _ := block["enforcementAction"].(string); a != "" {
		action = a
	}
	return "psc-" + action
}

// constraintFeatures reads the features a constraint enforces: the keys of its
// spec.parameters.features. found is false when the constraint does not exist.
func constraintFeatures(ctx context.Context, name string) (features map[string]interface{}, found bool, err error) {
	c := policyConstraint(name)
	if found, err := getObject(ctx, c); err != nil || !found {
		return nil, found, err
	}
	features, _, err = unstructured.NestedMap(c.Object, "spec", "parameters", "features")
	if err != nil {
		return nil, true, fmt.Errorf("constraint %s: spec.parameters.features: %w", name, err)
	}
	return features, true, nil
}

// expectEnforcedBy fails unless constraint name exists and lists feature in its
// parameters.features, and the CR's status names the template, kind and that constraint for it.
func expectEnforcedBy(t testing.TB, cr *v1alpha1.PodSecurityConstraints, feature, name string) {
	t.Helper()
	fs, ok := featureStatus(cr, feature)
	if !ok {
		t.Errorf("status has no entry for feature %s", feature)
	} else if fs.TemplateName != templates.PolicyTemplateName || fs.ConstraintKind != templates.PolicyKind || fs.ConstraintName != name {
		t.Errorf("status of %s names template %q, constraint %s/%s; want %s, %s/%s",
			feature, fs.TemplateName, fs.ConstraintKind, fs.ConstraintName, templates.PolicyTemplateName, templates.PolicyKind, name)
	}
	features, found, err := constraintFeatures(context.Background(), name)
	switch {
	case err != nil:
		t.Errorf("reading constraint %s: %v", name, err)
	case !found:
		t.Errorf("constraint %s/%s of feature %s does not exist", templates.PolicyKind, name, feature)
	default:
		if _, ok := features[feature]; !ok {
			t.Errorf("constraint %s does not enforce %s: its parameters.features has %v", name, feature, sortedKeys(features))
		}
	}
}

func sortedKeys(m map[string]interface{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// getObject reads obj by name; found is false for NotFound and for a kind without a CRD.
func getObject(ctx context.Context, obj *unstructured.Unstructured) (found bool, err error) {
	err = k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		return false, nil
	}
	return false, err
}

// generatedObjects lists the policy objects of the operator that exist: the policy template,
// every PSCPodSecurity constraint, and any other ConstraintTemplate with the operator's
// managed-by label but the admission probe's (e.g. a per-feature template of the old layout).
func generatedObjects(ctx context.Context) ([]string, error) {
	var out []string
	templatesList := &unstructured.UnstructuredList{}
	templatesList.SetGroupVersionKind(templates.TemplateGVK.GroupVersion().WithKind("ConstraintTemplateList"))
	if err := k8s.List(ctx, templatesList, client.MatchingLabels{templates.LabelManagedBy: templates.ManagedByValue}); err != nil && !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("listing ConstraintTemplates: %w", err)
	}
	for _, u := range templatesList.Items {
		if u.GetLabels()[templates.LabelComponent] != probeComponent {
			out = append(out, "ConstraintTemplate/"+u.GetName())
		}
	}
	if found, err := getObject(ctx, policyTemplate()); err != nil {
		return nil, fmt.Errorf("reading ConstraintTemplate %s: %w", templates.PolicyTemplateName, err)
	} else if found && !contains(out, "ConstraintTemplate/"+templates.PolicyTemplateName) {
		out = append(out, "ConstraintTemplate/"+templates.PolicyTemplateName)
	}
	constraints, err := policyConstraints(ctx)
	if err != nil {
		return nil, err
	}
	for _, u := range constraints {
		out = append(out, templates.PolicyKind+"/"+u.GetName())
	}
	sort.Strings(out)
	return out, nil
}

// probeComponent is the component label of the admission probe's template and constraint,
// which live as long as the operator, not the CR.
const probeComponent = "admission-probe"

// policyConstraints lists every PSCPodSecurity constraint; none while its CRD does not exist.
func policyConstraints(ctx context.Context) ([]unstructured.Unstructured, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind + "List"))
	if err := k8s.List(ctx, list); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s constraints: %w", templates.PolicyKind, err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].GetName() < list.Items[j].GetName() })
	return list.Items, nil
}

// ---------------------------------------------------------------------------------------------
// Namespaces and pods

// newNamespace creates a namespace e2e-<run>-<suffix> (or exactly name when suffix starts with
// "="); its pods are deleted when the test ends.
func newNamespace(t testing.TB, suffix string) string {
	t.Helper()
	name := "e2e-" + runID + "-" + strings.ToLower(suffix)
	if strings.HasPrefix(suffix, "=") {
		name = suffix[1:]
	}
	if len(name) > 63 {
		t.Fatalf("namespace name %q is too long", name)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{e2eLabel: runID}}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := deleteE2EPods(ctx, name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		// Its pods are gone already; the namespace controller deletes the rest.
		_ = k8s.Delete(ctx, ns)
	})
	return name
}

// deleteE2EPods deletes every pod in namespace ns, or in every namespace this suite ever
// created when ns is "", removing finalizers first. Pods that are not bound to a node are
// deleted at once.
func deleteE2EPods(ctx context.Context, ns string) error {
	var namespaces []string
	if ns != "" {
		namespaces = []string{ns}
	} else {
		list := &corev1.NamespaceList{}
		if err := k8s.List(ctx, list, client.HasLabels{e2eLabel}); err != nil {
			return fmt.Errorf("listing e2e namespaces: %w", err)
		}
		for _, n := range list.Items {
			namespaces = append(namespaces, n.Name)
		}
	}
	for _, n := range namespaces {
		pods := &corev1.PodList{}
		if err := k8s.List(ctx, pods, client.InNamespace(n)); err != nil {
			return fmt.Errorf("listing pods in %s: %w", n, err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if len(p.Finalizers) > 0 {
				patch := []byte(`{"metadata":{"finalizers":null}}`)
				if err := k8s.Patch(ctx, p, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
					return fmt.Errorf("removing finalizers of pod %s/%s: %w", n, p.Name, err)
				}
			}
			if err := k8s.Delete(ctx, p, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting pod %s/%s: %w", n, p.Name, err)
			}
		}
	}
	return nil
}

// createPod creates pod through client-go; the error is the API server's answer.
func createPod(pod *corev1.Pod) (*corev1.Pod, error) {
	return clientset.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
}

// simplePod is a pod with one container and no security settings.
func simplePod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// privilegedPod is simplePod with a privileged container.
func privilegedPod(ns, name, image string) *corev1.Pod {
	p := simplePod(ns, name, image)
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptrTo(true)}
	return p
}

func ptrTo[T any](v T) *T { return &v }

// privilegedMessage is privilegedContainers' message for container "app".
const privilegedMessage = `psc/privilegedContainers: container "app" is privileged (securityContext.privileged: true)`

// expectDenied fails unless err is a denial by Gatekeeper's webhook containing every message.
func expectDenied(t testing.TB, what string, err error, messages ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: admitted, want denied by %s with %q", what, "validation.gatekeeper.sh", messages)
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, gatekeeperDenial) {
		t.Errorf("%s: failed, but not with a denial by Gatekeeper's webhook:\n  got:  %s\n  want: %s ... %q", what, msg, gatekeeperDenial, messages)
		return
	}
	for _, m := range messages {
		if !strings.Contains(msg, m) {
			t.Errorf("%s: the denial lacks an expected message:\n  got:  %s\n  want: %s", what, msg, m)
		}
	}
}

// expectAdmitted fails if err is not nil.
func expectAdmitted(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: want admitted, got: %v", what, err)
	}
}

// eventuallyAdmitted creates pods made by mk until one is admitted (Gatekeeper drops a deleted
// constraint from its webhook shortly after the deletion), and returns how long it took.
func eventuallyAdmitted(t testing.TB, timeout time.Duration, what string, mk func(attempt int) *corev1.Pod) time.Duration {
	t.Helper()
	attempt := 0
	return eventually(t, timeout, what+" to be admitted", func() (bool, string) {
		attempt++
		_, err := createPod(mk(attempt))
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

func compactJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(data)
}

// readyReason is Ready's status and reason.
func readyReason(cr *v1alpha1.PodSecurityConstraints) (metav1.ConditionStatus, string) {
	ready := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionReady)
	if ready == nil {
		return metav1.ConditionUnknown, ""
	}
	return ready.Status, ready.Reason
}

// fullSamplePath is the sample CR with every feature switched on.
func fullSamplePath() string {
	return filepath.Join(repoRoot, "config", "samples", "policy_v1alpha1_podsecurityconstraints_full.yaml")
}

// legacyPods are two pods that, together, violate every feature of the full sample; the API
// server accepts both. One pod cannot do it alone: procMount Unmasked needs hostUsers: false,
// which the API server forbids together with hostPID/hostIPC. legacyViolator tells which of
// them violates a feature.
func legacyPods(ns string) []*corev1.Pod {
	userNS := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"},
		Spec: corev1.PodSpec{
			HostUsers: ptrTo(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser: ptrTo(int64(0)), RunAsGroup: ptrTo(int64(0)),
				Sysctls:        []corev1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}},
				SELinuxOptions: &corev1.SELinuxOptions{Type: "spc_t"},
			},
			Containers: []corev1.Container{{
				Name: "app", Image: "nginx",
				Ports: []corev1.ContainerPort{{ContainerPort: 9999, HostPort: 9999}},
				SecurityContext: &corev1.SecurityContext{
					Privileged: ptrTo(true), AllowPrivilegeEscalation: ptrTo(true),
					ProcMount:       ptrTo(corev1.UnmaskedProcMount),
					Capabilities:    &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}},
					SeccompProfile:  &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
					AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "root", MountPath: "/host"}},
				LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(22), Host: "169.254.169.254"},
				}},
			}},
			Volumes: []corev1.Volume{
				{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}},
				{Name: "flex", VolumeSource: corev1.VolumeSource{FlexVolume: &corev1.FlexVolumeSource{Driver: "other/x"}}},
			},
		},
	}
	hostNS := simplePod(ns, "legacy-host-ns", "nginx")
	hostNS.Spec.HostPID, hostNS.Spec.HostIPC = true, true
	// A HostProcess pod must use the host network; the API server requires it.
	hostProcess := simplePod(ns, "legacy-host-process", "nginx")
	hostProcess.Spec.HostNetwork = true
	hostProcess.Spec.SecurityContext = &corev1.PodSecurityContext{WindowsOptions: &corev1.WindowsSecurityContextOptions{HostProcess: ptrTo(true)}}
	return []*corev1.Pod{userNS, hostNS, hostProcess}
}

func legacyViolator(feature string) string {
	switch feature {
	case "hostNamespaces":
		return "legacy-host-ns"
	case "hostProcess":
		return "legacy-host-process"
	}
	return "legacy"
}

// compliantPod satisfies every feature of the full sample.
func compliantPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptrTo(true), RunAsUser: ptrTo(int64(1000)), RunAsGroup: ptrTo(int64(1000)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "app", Image: "nginx",
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptrTo(false), ReadOnlyRootFilesystem: ptrTo(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// createLegacyPods creates legacyPods in ns; call it before the policies exist.
func createLegacyPods(t testing.TB, ns string) {
	t.Helper()
	for _, p := range legacyPods(ns) {
		if _, err := createPod(p); err != nil {
			t.Fatalf("creating pod %s/%s before the policies: %v", ns, p.Name, err)
		}
	}
}
