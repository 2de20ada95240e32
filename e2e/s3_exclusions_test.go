//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	spec := map[string]interface{}{
		"excludedNamespaces": []interface{}{"kube-system", prefix + "gx-*", prefix + "gexact"},
		"exemptImages":       []interface{}{globalExempt + "*"},
		"privilegedContainers": map[string]interface{}{
			"enabled":            true,
			"excludedNamespaces": []interface{}{prefix + "fx-*"},
			"exemptImages":       []interface{}{featureExempt},
		},
		"hostNamespaces": map[string]interface{}{"enabled": true},
	}
	gen := setSpec(t, spec)
	waitReady(t, gen, enforceTimeout)
	// privilegedContainers has namespaces of its own, so a constraint of its own
	// (psc-privileged-containers); hostNamespaces is in psc-deny.
	cr := mustGetCR(t)
	for _, f := range []string{"privilegedContainers", "hostNamespaces"} {
		expectEnforcedBy(t, cr, f, wantConstraintName(t, spec, f))
	}

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

// TestExemptImagesInSharedConstraint: a container-level feature with exemptImages of its own
// shares psc-deny with features that have none; its images exempt its containers from it alone.
func TestExemptImagesInSharedConstraint(t *testing.T) {
	startScenario(t)
	const (
		globalExempt  = "registry.example.com/global/"   // global exemptImages entry is this + "*"
		featureExempt = "registry.example.com/debug:1.0" // exact, privilegedContainers only
	)
	spec := map[string]interface{}{
		"exemptImages":         []interface{}{globalExempt + "*"},
		"privilegedContainers": map[string]interface{}{"enabled": true, "exemptImages": []interface{}{featureExempt}},
		"capabilities":         map[string]interface{}{"enabled": true, "allowedCapabilities": []interface{}{"NET_BIND_SERVICE"}},
	}
	gen := setSpec(t, spec)
	waitReady(t, gen, enforceTimeout)
	cr := mustGetCR(t)
	deny := wantConstraintName(t, spec, "privilegedContainers")
	for _, f := range []string{"privilegedContainers", "capabilities"} {
		expectEnforcedBy(t, cr, f, deny)
	}
	features, _, err := constraintFeatures(context.Background(), deny)
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := features["privilegedContainers"].(map[string]interface{})
	own, _, _ := unstructured.NestedStringSlice(entry, "exemptImages")
	if !contains(own, featureExempt) || !contains(own, globalExempt+"*") {
		t.Errorf("constraint %s: privilegedContainers' exemptImages %v, want its own %s and the global %s*", deny, own, featureExempt, globalExempt)
	}

	ns := newNamespace(t, "shared-exempt")
	both := func(name, image string) *corev1.Pod {
		p := privilegedPod(ns, name, image)
		p.Spec.Containers[0].SecurityContext.Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}
		return p
	}
	capsMessage := `psc/capabilities: container "app" adds SYS_ADMIN`
	// privilegedContainers exempts the image, capabilities does not.
	_, err = createPod(both("feature-exempt", featureExempt))
	expectDenied(t, "privileged pod adding SYS_ADMIN with privilegedContainers' exempt image", err, capsMessage)
	if err != nil && strings.Contains(err.Error(), "psc/privilegedContainers") {
		t.Errorf("privilegedContainers judged a container whose image it exempts: %v", err)
	}
	// Neither exempts another image.
	_, err = createPod(both("not-exempt", "registry.example.com/apps/web"))
	expectDenied(t, "privileged pod adding SYS_ADMIN with an image nobody exempts", err, privilegedMessage, capsMessage)
	// Both exempt the global image.
	_, err = createPod(both("global-exempt", globalExempt+"agent:2"))
	expectAdmitted(t, "privileged pod adding SYS_ADMIN with a globally exempt image", err)
}
