//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// addEphemeral adds an ephemeral container to pod ns/name through the pods/ephemeralcontainers
// subresource, as `kubectl debug` does (UpdateEphemeralContainers).
func addEphemeral(ns, name string, ec corev1.EphemeralContainer) error {
	ctx := context.Background()
	pod, err := clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, ec)
	_, err = clientset.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, name, pod, metav1.UpdateOptions{})
	return err
}

// debugContainer is what `kubectl debug --profile=sysadmin` adds (privileged), or with
// privileged false what --profile=general adds.
func debugContainer(name string, privileged bool) corev1.EphemeralContainer {
	ec := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: name, Image: "busybox", Stdin: true, TTY: true,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}}
	if privileged {
		ec.SecurityContext = &corev1.SecurityContext{Privileged: ptrTo(true)}
	}
	return ec
}

// TestEphemeralContainers: with privilegedContainers enforced, a privileged ephemeral container
// added through pods/ephemeralcontainers is denied and a non-privileged one is admitted, also
// on a pod that already has a privileged ephemeral container from before the policy.
func TestEphemeralContainers(t *testing.T) {
	startScenario(t)
	ns := newNamespace(t, "ephemeral")

	// Before the policy: a pod that got a privileged debug container.
	if _, err := createPod(simplePod(ns, "legacy", "nginx")); err != nil {
		t.Fatalf("creating pod legacy: %v", err)
	}
	if err := addEphemeral(ns, "legacy", debugContainer("old-debugger", true)); err != nil {
		t.Fatalf("adding a privileged ephemeral container before the policy: %v", err)
	}

	gen := setSpec(t, map[string]interface{}{"privilegedContainers": map[string]interface{}{"enabled": true}})
	waitFeature(t, gen, "privilegedContainers", v1alpha1.FeatureEnforced)

	if _, err := createPod(simplePod(ns, "target", "nginx")); err != nil {
		t.Fatalf("creating the compliant pod: %v", err)
	}
	err := addEphemeral(ns, "target", debugContainer("debugger", true))
	expectDenied(t, "privileged ephemeral container (kubectl debug --profile=sysadmin)", err,
		`psc/privilegedContainers: ephemeralContainer "debugger" is privileged (securityContext.privileged: true)`)
	if err != nil {
		t.Logf("privileged ephemeral container: %v", err)
	}

	err = addEphemeral(ns, "target", debugContainer("debugger", false))
	expectAdmitted(t, "non-privileged ephemeral container", err)
	pod, err := clientset.CoreV1().Pods(ns).Get(context.Background(), "target", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pod.Spec.EphemeralContainers); n != 1 || pod.Spec.EphemeralContainers[0].Name != "debugger" {
		t.Errorf("pod target has ephemeral containers %v, want just the non-privileged debugger", pod.Spec.EphemeralContainers)
	}

	// The older privileged ephemeral container does not block adding a compliant one.
	err = addEphemeral(ns, "legacy", debugContainer("new-debugger", false))
	expectAdmitted(t, "non-privileged ephemeral container on a pod with a privileged one from before the policy", err)
	err = addEphemeral(ns, "legacy", debugContainer("another-privileged", true))
	expectDenied(t, "privileged ephemeral container on the older pod", err,
		`psc/privilegedContainers: ephemeralContainer "another-privileged" is privileged (securityContext.privileged: true)`)
	if err != nil && strings.Contains(err.Error(), "old-debugger") {
		t.Errorf("the denial names the ephemeral container that predates the policy: %v", err)
	}
}
