//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// defaultingFeatures are the features that have a field to default.
var defaultingFeatures = []string{"readOnlyRootFilesystem", "usersAndGroups", "privilegeEscalation", "capabilities", "seLinux", "appArmor", "seccomp"}

// strictDefaultsSpec is the full sample's configuration of the features that have something to
// default (the strictest the sample has), with setDefaults switched on or off. The other
// features play no part and only slow convergence on a loaded machine.
func strictDefaultsSpec(t testing.TB, on bool) map[string]interface{} {
	t.Helper()
	data, err := os.ReadFile(fullSamplePath())
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]interface{}{}
	if err := sigsyaml.Unmarshal(data, &obj); err != nil {
		t.Fatal(err)
	}
	sample := obj["spec"].(map[string]interface{})
	spec := map[string]interface{}{"setDefaults": on}
	for _, f := range defaultingFeatures {
		block, ok := sample[f]
		if !ok {
			t.Fatalf("the full sample has no %s block", f)
		}
		spec[f] = block
	}
	return spec
}

// barePod has no securityContext at all: an init container and two containers, one adding
// NET_BIND_SERVICE.
func barePod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptrTo(false),
			InitContainers:               []corev1.Container{{Name: "init", Image: "busybox"}},
			Containers: []corev1.Container{
				{Name: "app", Image: "nginx"},
				{Name: "proxy", Image: "envoy", SecurityContext: &corev1.SecurityContext{
					Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}},
				}},
			},
		},
	}
}

// mutationWebhookInstalled reports whether Gatekeeper's MutatingWebhookConfiguration exists.
func mutationWebhookInstalled(ctx context.Context) bool {
	list := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if err := k8s.List(ctx, list); err != nil {
		return false
	}
	for _, c := range list.Items {
		for _, w := range c.Webhooks {
			if w.Name == "mutation.gatekeeper.sh" {
				return true
			}
		}
	}
	return false
}

// replicaSetCreated reports whether a ReplicaSet appears in ns within timeout, which tells that
// kube-controller-manager runs (the local cluster runs it without leader election, so without a
// lease).
func replicaSetCreated(ctx context.Context, ns string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		list := &appsv1.ReplicaSetList{}
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err == nil && len(list.Items) > 0 {
			return true
		}
		time.Sleep(time.Second)
	}
	return false
}

// checkDefaulted compares a stored pod's security settings with the defaults of the full sample.
func checkDefaulted(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	sc := pod.Spec.SecurityContext
	switch {
	case sc == nil:
		t.Fatalf("stored pod has no pod securityContext: the defaults were not applied")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("pod runAsNonRoot %v, want true", sc.RunAsNonRoot)
	case sc.RunAsGroup == nil || *sc.RunAsGroup != 1000:
		t.Errorf("pod runAsGroup %v, want 1000 (first range's min)", sc.RunAsGroup)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("pod seccompProfile %+v, want RuntimeDefault", sc.SeccompProfile)
	case sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeRuntimeDefault:
		t.Errorf("pod appArmorProfile %+v, want RuntimeDefault", sc.AppArmorProfile)
	case sc.SELinuxOptions == nil || *sc.SELinuxOptions != (corev1.SELinuxOptions{Type: "container_t"}):
		t.Errorf("pod seLinuxOptions %+v, want {type: container_t}", sc.SELinuxOptions)
	case sc.RunAsUser != nil || sc.FSGroup != nil || len(sc.SupplementalGroups) > 0:
		t.Errorf("pod got runAsUser/fsGroup/supplementalGroups %v/%v/%v: the sample's rules set none", sc.RunAsUser, sc.FSGroup, sc.SupplementalGroups)
	}
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		csc := c.SecurityContext
		if csc == nil {
			t.Errorf("container %s has no securityContext", c.Name)
			continue
		}
		if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			t.Errorf("container %s readOnlyRootFilesystem %v, want true", c.Name, csc.ReadOnlyRootFilesystem)
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Errorf("container %s allowPrivilegeEscalation %v, want false", c.Name, csc.AllowPrivilegeEscalation)
		}
		if csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s capabilities %+v, want drop [ALL]", c.Name, csc.Capabilities)
			continue
		}
		wantAdd := []corev1.Capability(nil)
		if c.Name == "proxy" {
			wantAdd = []corev1.Capability{"NET_BIND_SERVICE"}
		}
		if !slices.Equal(csc.Capabilities.Add, wantAdd) {
			t.Errorf("container %s adds %v, want %v (the pod's own add kept)", c.Name, csc.Capabilities.Add, wantAdd)
		}
		if csc.RunAsUser != nil || csc.RunAsNonRoot != nil || csc.SeccompProfile != nil {
			t.Errorf("container %s got container-level user/seccomp values; defaults are set on the pod", c.Name)
		}
	}
}

// TestDefaults: under the full sample's defaulting features with setDefaults, a pod with no securityContext is
// admitted and stored with every default; explicit violations are still denied; a bare
// Deployment is admitted and its pods are completed; with setDefaults false the bare pod is
// denied.
func TestDefaults(t *testing.T) {
	startScenario(t)
	ctx := context.Background()
	if !mutationWebhookInstalled(ctx) {
		t.Skip("Gatekeeper's mutating webhook (mutation.gatekeeper.sh) is not installed in this cluster; setDefaults cannot take effect")
	}
	ns := newNamespace(t, "defaults")

	// Before the CR: a pod that got a bare debug container (kubectl debug) long ago. Ephemeral
	// containers stay in the pod's spec for good.
	if _, err := createPod(simplePod(ns, "legacy", "nginx")); err != nil {
		t.Fatalf("creating pod legacy: %v", err)
	}
	if err := addEphemeral(ns, "legacy", debugContainer("old-debugger", false)); err != nil {
		t.Fatalf("adding a bare ephemeral container before the CR: %v", err)
	}

	// Seven features and 22 mutators: allow for a loaded machine.
	const convergeTimeout = 5 * time.Minute
	gen := setSpec(t, strictDefaultsSpec(t, true))
	waitReady(t, gen, convergeTimeout)
	eventually(t, convergeTimeout, "DefaultsActive", func() (bool, string) {
		cr, err := getCR(ctx)
		if err != nil || cr == nil {
			return false, fmt.Sprintf("reading the CR: %v", err)
		}
		c := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionDefaultsActive)
		if c == nil || c.ObservedGeneration < gen || c.Status != metav1.ConditionTrue {
			return false, fmt.Sprintf("%+v", c)
		}
		return true, ""
	})

	// Gatekeeper loads new mutators shortly after the status reports them: retry briefly.
	var stored *corev1.Pod
	eventually(t, time.Minute, "the bare pod to be admitted", func() (bool, string) {
		p, err := createPod(barePod(ns, fmt.Sprintf("bare-%d", time.Now().UnixNano()%100000)))
		if err != nil {
			return false, err.Error()
		}
		stored = p
		return true, ""
	})
	checkDefaulted(t, stored)
	got := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(stored), got); err != nil {
		t.Fatalf("reading the stored pod: %v", err)
	}
	checkDefaulted(t, got)

	checkEphemeralContainers(t, ns, stored.Name)

	escalate := barePod(ns, "escalate")
	escalate.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptrTo(true)}
	_, err := createPod(escalate)
	expectDenied(t, "a pod with allowPrivilegeEscalation: true", err,
		`psc/privilegeEscalation: container "app" has securityContext.allowPrivilegeEscalation true, must be false`)
	root := barePod(ns, "root")
	root.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptrTo(int64(0))}
	_, err = createPod(root)
	expectDenied(t, "a pod with runAsUser: 0", err, `psc/usersAndGroups: container "app" runs as user 0`)

	// A bare Deployment: judged at apply time as its completed pod, then its pods completed.
	deploy := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: bare, namespace: %s}
spec:
  selector: {matchLabels: {app: bare}}
  template:
    metadata: {labels: {app: bare}}
    spec:
      automountServiceAccountToken: false
      containers:
      - {name: app, image: nginx}
`, ns)
	if out, err := kubectlApply(t, deploy); err != nil {
		t.Errorf("kubectl apply of a bare Deployment: %v\n%s", err, out)
	} else if !replicaSetCreated(ctx, ns, 60*time.Second) {
		t.Errorf("no ReplicaSet of the bare Deployment within 60s: the local cluster's kube-controller-manager must run (hack/cluster-up.sh)")
	} else {
		eventually(t, 90*time.Second, "a completed pod of the bare Deployment", func() (bool, string) {
			pods := &corev1.PodList{}
			if err := k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "bare"}); err != nil {
				return false, err.Error()
			}
			if len(pods.Items) == 0 {
				return false, "no pods yet"
			}
			p := pods.Items[0]
			if p.Spec.SecurityContext == nil || p.Spec.SecurityContext.RunAsNonRoot == nil || p.Spec.Containers[0].SecurityContext == nil {
				return false, fmt.Sprintf("pod %s is not completed: %s", p.Name, compactJSON(p.Spec))
			}
			return true, ""
		})
	}

	checkDefaultsWithheld(t, ns, convergeTimeout)

	// Defaults off: the same bare pod is denied.
	gen = setSpec(t, strictDefaultsSpec(t, false))
	waitReady(t, gen, convergeTimeout)
	eventually(t, time.Minute, "the bare pod to be denied without defaults", func() (bool, string) {
		_, err := createPod(barePod(ns, fmt.Sprintf("bare-off-%d", time.Now().UnixNano()%100000)))
		if err == nil {
			return false, "admitted"
		}
		if !strings.Contains(err.Error(), "psc/readOnlyRootFilesystem:") {
			return false, err.Error()
		}
		return true, ""
	})
}

// checkEphemeralContainers: with setDefaults on, ephemeral containers are judged, never
// completed, and no mutator touches one added earlier (the API server would then reject every
// later kubectl debug, label change and finalizer removal of that pod). target is a pod
// completed by the defaults; ns/legacy got the bare ephemeral container "old-debugger" before
// the CR existed.
func checkEphemeralContainers(t *testing.T, ns, target string) {
	t.Helper()
	ctx := context.Background()

	// A bare debug container is not completed: it is denied for what it leaves unset.
	err := addEphemeral(ns, target, debugContainer("bare-debugger", false))
	expectDenied(t, "a bare ephemeral container", err,
		`psc/readOnlyRootFilesystem: ephemeralContainer "bare-debugger"`,
		`psc/privilegeEscalation: ephemeralContainer "bare-debugger"`,
		`psc/capabilities: ephemeralContainer "bare-debugger"`)

	// kubectl debug --profile=restricted, plus a read-only root filesystem: admitted and stored
	// exactly as kubectl sent it.
	custom := filepath.Join(t.TempDir(), "read-only.yaml")
	if err := os.WriteFile(custom, []byte("securityContext: {readOnlyRootFilesystem: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := kubectl(kctx, "debug", "-n", ns, target, "--image=busybox", "--container=debugger", "--profile=restricted", "--custom="+custom)
	expectAdmitted(t, "kubectl debug --profile=restricted --custom=read-only.yaml: "+out, err)
	pod := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: target}, pod); err != nil {
		t.Fatal(err)
	}
	want := &corev1.SecurityContext{
		RunAsNonRoot: ptrTo(true), AllowPrivilegeEscalation: ptrTo(false), ReadOnlyRootFilesystem: ptrTo(true),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if n := len(pod.Spec.EphemeralContainers); n != 1 || pod.Spec.EphemeralContainers[0].Name != "debugger" {
		t.Errorf("pod %s has ephemeral containers %s, want just debugger", target, compactJSON(pod.Spec.EphemeralContainers))
	} else if got := pod.Spec.EphemeralContainers[0].SecurityContext; !reflect.DeepEqual(got, want) {
		t.Errorf("stored debugger securityContext %s, want what kubectl sent: %s", compactJSON(got), compactJSON(want))
	}

	// The older pod: its bare ephemeral container is left alone, so it can still be labelled
	// and debugged with a compliant container.
	legacy := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "legacy"}, legacy); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(legacy.DeepCopy())
	legacy.Labels = map[string]string{"touched": "yes"}
	if err := k8s.Patch(ctx, legacy, patch); err != nil {
		t.Errorf("labelling a pod with an ephemeral container from before the defaults: %v", err)
	}
	compliant := debugContainer("new-debugger", false)
	compliant.SecurityContext = &corev1.SecurityContext{
		RunAsNonRoot: ptrTo(true), RunAsGroup: ptrTo(int64(1000)), AllowPrivilegeEscalation: ptrTo(false), ReadOnlyRootFilesystem: ptrTo(true),
		Capabilities:    &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:  &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault},
		SELinuxOptions:  &corev1.SELinuxOptions{Type: "container_t"},
	}
	err = addEphemeral(ns, "legacy", compliant)
	expectAdmitted(t, "a compliant ephemeral container on a pod with a bare one from before the defaults", err)
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "legacy"}, legacy); err != nil {
		t.Fatal(err)
	}
	for _, ec := range legacy.Spec.EphemeralContainers {
		if ec.Name == "old-debugger" && ec.SecurityContext != nil {
			t.Errorf("the ephemeral container from before the defaults changed: %s", compactJSON(ec.SecurityContext))
		}
	}
}

// checkDefaultsWithheld: readOnlyRootFilesystem with exemptImages follows spec.setDefaults, so
// its defaults are withheld and the status says so; the other features still complete pods. A
// container of an exempt image is admitted as it is; the others are denied for leaving
// readOnlyRootFilesystem unset.
func checkDefaultsWithheld(t *testing.T, ns string, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	spec := strictDefaultsSpec(t, true)
	spec["readOnlyRootFilesystem"] = map[string]interface{}{"enabled": true, "exemptImages": []interface{}{"registry.example.com/debug/*"}}
	gen := setSpec(t, spec)
	waitReady(t, gen, timeout)
	eventually(t, timeout, "DefaultsActive False/DefaultsWithheld", func() (bool, string) {
		cr, err := getCR(ctx)
		if err != nil || cr == nil {
			return false, fmt.Sprintf("reading the CR: %v", err)
		}
		c := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionDefaultsActive)
		if c == nil || c.ObservedGeneration < gen || c.Status != metav1.ConditionFalse || c.Reason != "DefaultsWithheld" {
			return false, fmt.Sprintf("%+v", c)
		}
		if fs, _ := featureStatus(cr, "readOnlyRootFilesystem"); fs.Defaults != v1alpha1.DefaultsWithheld || !strings.Contains(fs.DefaultsMessage, "registry.example.com/debug/*") {
			return false, fmt.Sprintf("readOnlyRootFilesystem defaults %q (%q)", fs.Defaults, fs.DefaultsMessage)
		}
		return true, ""
	})

	// Gatekeeper drops the pruned mutators shortly after: retry until only readOnlyRootFilesystem
	// denies the bare pod.
	eventually(t, time.Minute, "the bare pod denied by readOnlyRootFilesystem only", func() (bool, string) {
		_, err := createPod(barePod(ns, fmt.Sprintf("withheld-%d", time.Now().UnixNano()%100000)))
		if err == nil {
			return false, "admitted"
		}
		msg := err.Error()
		if !strings.Contains(msg, `psc/readOnlyRootFilesystem: container "app"`) || strings.Contains(msg, "psc/privilegeEscalation:") {
			return false, msg
		}
		return true, ""
	})
	exempt := barePod(ns, "exempt-images")
	for _, cs := range [][]corev1.Container{exempt.Spec.InitContainers, exempt.Spec.Containers} {
		for i := range cs {
			cs[i].Image = "registry.example.com/debug/" + cs[i].Name + ":1"
		}
	}
	stored, err := createPod(exempt)
	expectAdmitted(t, "a bare pod of exempt images while readOnlyRootFilesystem's defaults are withheld", err)
	if err == nil {
		for _, c := range append(append([]corev1.Container{}, stored.Spec.InitContainers...), stored.Spec.Containers...) {
			csc := c.SecurityContext
			if csc == nil || csc.ReadOnlyRootFilesystem != nil || csc.AllowPrivilegeEscalation == nil {
				t.Errorf("container %s securityContext %s, want readOnlyRootFilesystem left unset and the other defaults applied", c.Name, compactJSON(csc))
			}
		}
	}
}

// TestRenderedDefaultsCompleteWorkloadsInGator: gator applies the rendered mutators to the
// Pod a workload would create, as Gatekeeper's expansion does: with setDefaults a bare
// Deployment passes the full sample, without it it is reported.
func TestRenderedDefaultsCompleteWorkloadsInGator(t *testing.T) {
	gator := gatorBinary(t)
	dir := t.TempDir()
	deployment := filepath.Join(dir, "deployment.yaml")
	if err := os.WriteFile(deployment, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: bare, namespace: shop}
spec:
  selector: {matchLabels: {app: bare}}
  template:
    metadata: {labels: {app: bare}}
    spec:
      initContainers:
      - {name: init, image: busybox}
      containers:
      - {name: app, image: nginx}
      - name: proxy
        image: envoy
        securityContext: {capabilities: {add: [NET_BIND_SERVICE]}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(setDefaults bool) (string, int) {
		t.Helper()
		spec := strictDefaultsSpec(t, setDefaults)
		cr, err := sigsyaml.Marshal(map[string]interface{}{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "PodSecurityConstraints",
			"metadata": map[string]interface{}{"name": v1alpha1.ClusterName}, "spec": spec,
		})
		if err != nil {
			t.Fatal(err)
		}
		out := runPSC(t, cr, "render", "-f", "-")
		if got := strings.Count(string(out), "\nkind: Assign\n") + strings.Count(string(out), "\nkind: ModifySet\n"); (got > 0) != setDefaults {
			t.Fatalf("setDefaults %v rendered %d mutators", setDefaults, got)
		}
		rendered := filepath.Join(dir, fmt.Sprintf("rendered-%v.yaml", setDefaults))
		if err := os.WriteFile(rendered, out, 0o600); err != nil {
			t.Fatal(err)
		}
		return runGatorTest(t, gator, rendered, deployment)
	}
	if out, code := run(true); code != 0 || strings.TrimSpace(out) != "" {
		t.Errorf("with setDefaults, gator reports the bare Deployment (exit %d):\n%s", code, out)
	}
	out, code := run(false)
	if code == 0 {
		t.Errorf("without setDefaults, gator admits the bare Deployment:\n%s", out)
	}
	for _, want := range []string{"[Implied by psc-deployment] psc/readOnlyRootFilesystem:", "psc/privilegeEscalation:", "psc/seccomp:", "psc/usersAndGroups:", "psc/capabilities:"} {
		if !strings.Contains(out, want) {
			t.Errorf("without setDefaults, gator's output lacks %q:\n%s", want, out)
		}
	}
}
