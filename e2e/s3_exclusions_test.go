//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestExclusions: excludedNamespaces (global and per feature, names and prefix-* globs) and
// exemptImages (global prefix and per-feature exact) are honoured by Gatekeeper: violating pods
// are admitted there and denied everywhere else.
func TestExclusions(t *testing.T) {
	startScenario(t)
	prefix := "e2e-" + runID + "-"
	const (
		globalExempt  = "registry.example.com/global/"   // global exemptImages entry is this + "*"
		featureExempt = "registry.example.com/debug:1.0" // exact, privilegedContainers only
	)
	gen := setSpec(t, map[string]interface{}{
		"excludedNamespaces": []interface{}{"kube-system", prefix + "gx-*", prefix + "gexact"},
		"exemptImages":       []interface{}{globalExempt + "*"},
		"privilegedContainers": map[string]interface{}{
			"enabled":            true,
			"excludedNamespaces": []interface{}{prefix + "fx-*"},
			"exemptImages":       []interface{}{featureExempt},
		},
		"hostNamespaces": map[string]interface{}{"enabled": true},
	})
	waitReady(t, gen, enforceTimeout)

	plain := newNamespace(t, "plain")
	globalGlob := newNamespace(t, "gx-one")    // matches global <prefix>gx-*
	globalExact := newNamespace(t, "gexact")   // matches global <prefix>gexact
	nearMiss := newNamespace(t, "gx")          // does not match <prefix>gx-*
	exactMiss := newNamespace(t, "gexact-two") // does not match <prefix>gexact (no glob)
	featureGlob := newNamespace(t, "fx-one")   // matches privilegedContainers' <prefix>fx-*
	t.Logf("namespaces: %s", []string{plain, globalGlob, globalExact, nearMiss, exactMiss, featureGlob})

	type check struct {
		what   string
		pod    *corev1.Pod
		denied []string // expected messages; none: admitted
		absent string   // must not appear in the denial
	}
	mixed := privilegedPod(plain, "mixed", globalExempt+"agent:2")
	mixed.Spec.Containers = append(mixed.Spec.Containers, corev1.Container{
		Name: "other", Image: "registry.example.com/apps/web", SecurityContext: &corev1.SecurityContext{Privileged: ptrTo(true)},
	})
	exemptHostPID := hostPIDPod(plain, "exempt-host-pid")
	exemptHostPID.Spec.Containers[0].Image = globalExempt + "agent:2"

	checks := []check{
		// Namespaces.
		{"privileged pod in a namespace nobody excludes", privilegedPod(plain, "privileged", "nginx"), []string{privilegedMessage}, ""},
		{"hostPID pod in a namespace nobody excludes", hostPIDPod(plain, "host-pid"), []string{hostPIDMessage}, ""},
		{"privileged pod in a namespace matching a global glob", privilegedPod(globalGlob, "privileged", "nginx"), nil, ""},
		{"hostPID pod in a namespace matching a global glob", hostPIDPod(globalGlob, "host-pid"), nil, ""},
		{"privileged pod in a globally excluded namespace (exact name)", privilegedPod(globalExact, "privileged", "nginx"), nil, ""},
		{"privileged pod in a namespace that is the glob's prefix without its last '-'", privilegedPod(nearMiss, "privileged", "nginx"), []string{privilegedMessage}, ""},
		{"privileged pod in a namespace that merely starts with an excluded name", privilegedPod(exactMiss, "privileged", "nginx"), []string{privilegedMessage}, ""},
		{"privileged pod in a namespace matching privilegedContainers' glob", privilegedPod(featureGlob, "privileged", "nginx"), nil, ""},
		{"hostPID pod in a namespace excluded only from privilegedContainers", hostPIDPod(featureGlob, "host-pid"), []string{hostPIDMessage}, ""},
		// Images.
		{"privileged container with a globally exempt image (prefix)", privilegedPod(plain, "global-exempt", globalExempt+"agent:2"), nil, ""},
		{"privileged container with privilegedContainers' exempt image", privilegedPod(plain, "feature-exempt", featureExempt), nil, ""},
		{"privileged container with another tag of the exempt image (exact match only)", privilegedPod(plain, "feature-exempt-other-tag", "registry.example.com/debug:2.0"), []string{privilegedMessage}, ""},
		{"exempt and non-exempt privileged containers: only the non-exempt one is reported", mixed,
			[]string{`psc/privilegedContainers: container "other" is privileged (securityContext.privileged: true)`}, `container "app"`},
		{"hostPID pod with an exempt image: images do not exempt pod-level checks", exemptHostPID, []string{hostPIDMessage}, ""},
	}
	for _, c := range checks {
		_, err := createPod(c.pod)
		what := fmt.Sprintf("%s (%s/%s)", c.what, c.pod.Namespace, c.pod.Name)
		if len(c.denied) == 0 {
			expectAdmitted(t, what, err)
			continue
		}
		expectDenied(t, what, err, c.denied...)
		if c.absent != "" && err != nil && strings.Contains(err.Error(), c.absent) {
			t.Errorf("%s: the denial names %s: %v", what, c.absent, err)
		}
	}
}
