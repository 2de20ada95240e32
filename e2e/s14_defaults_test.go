//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// TestRenderedDefaultsCompleteWorkloadsInGator: gator applies the rendered mutators to the
// Pod a workload would create, as Gatekeeper's expansion does: with setDefaults a bare
// Deployment passes the full sample, without it it is reported.
func TestRenderedDefaultsCompleteWorkloadsInGator(t *testing.T) {
	manager, gator := os.Getenv("PSC_MANAGER"), os.Getenv("PSC_GATOR")
	if manager == "" || gator == "" {
		t.Fatal("PSC_MANAGER and PSC_GATOR must be set: run with make test-e2e")
	}
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
		render := exec.Command(manager, "render", "-f", "-")
		render.Stdin = bytes.NewReader(cr)
		out, err := render.Output()
		if err != nil {
			t.Fatalf("render: %v", err)
		}
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
