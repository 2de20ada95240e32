//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// featureCases are the two cases of cases.yaml a feature is tested with end to end.
type featureCases struct {
	denied, allowed policyCase
	// allowedAdapted says how the allowed case's pod was changed to be admissible.
	allowedAdapted string
	// skipped lists cases passed over because the API server rejects their pod.
	skipped []string
}

// pickCases chooses, from a feature's cases.yaml, the first denied creation case (action deny)
// and an allowed creation case, preferring one with the same spec. Cases model admission
// requests, and some pods in them cannot be created through the API server, which defaults and
// validates a pod before any webhook sees it:
//   - spec.ephemeralContainers cannot be set on create (they are added through the
//     pods/ephemeralcontainers subresource, see TestEphemeralContainers);
//   - hostPath paths may not contain "..";
//   - AppArmor and seccomp annotations must agree with the securityContext fields, and
//     per-container annotations must name an existing container;
//   - a projected serviceAccountToken needs a serviceAccountName.
//
// So every candidate is first created with a server-side dry run (before its feature is
// enabled, so only the API server's own validation can refuse it) and denied candidates the API
// server refuses are skipped. Allowed candidates are adapted instead, when the only obstacle is
// ephemeral containers: they are dropped, which cannot make an admitted pod violate anything.
func pickCases(t *testing.T, feature, ns string) featureCases {
	t.Helper()
	var fc featureCases
	cases := loadCases(t, feature)
	found := false
	for _, c := range cases {
		if !c.isDeniedCreate() {
			continue
		}
		if err := dryRunCase(c, ns, false); err != nil {
			fc.skipped = append(fc.skipped, fmt.Sprintf("%q (%v)", c.Name, err))
			continue
		}
		fc.denied, found = c, true
		break
	}
	if !found {
		t.Fatalf("%s: no denied creation case in cases.yaml whose pod the API server accepts; skipped: %s", feature, strings.Join(fc.skipped, "; "))
	}
	var fallback *policyCase
	var fallbackAdapted string
	for _, c := range cases {
		if !c.isAllowedCreate() {
			continue
		}
		adapted := ""
		if err := dryRunCase(c, ns, false); err != nil {
			if err2 := dryRunCase(c, ns, true); err2 != nil {
				fc.skipped = append(fc.skipped, fmt.Sprintf("%q (%v)", c.Name, err))
				continue
			}
			adapted = "spec.ephemeralContainers dropped: they cannot be set on create"
		}
		if sameSpec(c.specOf(feature), fc.denied.specOf(feature)) {
			fc.allowed, fc.allowedAdapted = c, adapted
			return fc
		}
		if fallback == nil {
			c := c
			fallback, fallbackAdapted = &c, adapted
		}
	}
	if fallback == nil {
		t.Fatalf("%s: no allowed creation case in cases.yaml whose pod the API server accepts; skipped: %s", feature, strings.Join(fc.skipped, "; "))
	}
	fc.allowed, fc.allowedAdapted = *fallback, fallbackAdapted
	return fc
}

// casePod is the case's pod for namespace ns, without ephemeral containers when dropEphemeral.
func casePod(t testing.TB, c policyCase, ns, name string, dropEphemeral bool) *corev1.Pod {
	t.Helper()
	pod, err := c.pod(ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if dropEphemeral {
		pod.Spec.EphemeralContainers = nil
	}
	return pod
}

// dryRunCase creates the case's pod with a server-side dry run; nil if the API server accepts it.
func dryRunCase(c policyCase, ns string, dropEphemeral bool) error {
	pod, err := c.pod(ns, "dry-run")
	if err != nil {
		return err
	}
	if dropEphemeral {
		pod.Spec.EphemeralContainers = nil
	}
	_, err = clientset.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// TestFeatures: for each of the 17 features, a denied and an allowed case of its cases.yaml
// are replayed through the API server and Gatekeeper, then the feature is switched off again.
func TestFeatures(t *testing.T) {
	startScenario(t)
	// Choose every feature's cases first, while no policy is active.
	probeNS := newNamespace(t, "case-probe")
	chosen := map[string]featureCases{}
	for _, f := range templates.Features() {
		chosen[f.Name] = pickCases(t, f.Name, probeNS)
	}
	if len(chosen) != 17 {
		t.Fatalf("the registry has %d features, want 17", len(chosen))
	}

	for _, f := range templates.Features() {
		fc := chosen[f.Name]
		t.Run(f.Name, func(t *testing.T) {
			testFeature(t, f, fc)
		})
	}
}

func testFeature(t *testing.T, f templates.Feature, fc featureCases) {
	t.Logf("denied case: %q (spec %s)", fc.denied.Name, compactJSON(fc.denied.specOf(f.Name)))
	t.Logf("allowed case: %q (spec %s)", fc.allowed.Name, compactJSON(fc.allowed.specOf(f.Name)))
	if fc.allowedAdapted != "" {
		t.Logf("allowed case adapted: %s", fc.allowedAdapted)
	}
	if len(fc.skipped) > 0 {
		t.Logf("cases skipped, the API server refuses their pods: %s", strings.Join(fc.skipped, "; "))
	}
	ns := newNamespace(t, "f-"+f.Name)

	// Enforce the denied case's spec.
	spec := fc.denied.specOf(f.Name)
	gen := setSpec(t, spec)
	d := waitFeature(t, gen, f.Name, v1alpha1.FeatureEnforced)
	t.Logf("%s Enforced %s after the spec change", f.Name, d.Round(10*time.Millisecond))
	cr := mustGetCR(t)
	fs, _ := featureStatus(cr, f.Name)
	if !fs.TemplateCreated || !fs.Enforced || fs.EnforcementAction != v1alpha1.EnforcementDeny {
		t.Errorf("status of %s: %+v, want templateCreated, enforced, action deny", f.Name, fs)
	}
	// The one policy template serves it, through the constraint of its group.
	constraint := wantConstraintName(t, spec, f.Name)
	expectEnforcedBy(t, cr, f.Name, constraint)
	if found, err := getObject(context.Background(), policyTemplate()); err != nil || !found {
		t.Errorf("ConstraintTemplate %s does not exist while %s is Enforced (err %v)", templates.PolicyTemplateName, f.Name, err)
	}

	// The violating pod is denied, with the case's messages.
	violating := casePod(t, fc.denied, ns, "violating", false)
	_, err := createPod(violating)
	expectDenied(t, fmt.Sprintf("case %q", fc.denied.Name), err, fc.denied.Violations...)
	if err != nil {
		t.Logf("violating pod: %v", err)
	}

	// The compliant pod is admitted (under its own spec if it differs).
	if !sameSpec(fc.allowed.specOf(f.Name), spec) {
		spec = fc.allowed.specOf(f.Name)
		gen = setSpec(t, spec)
		waitFeature(t, gen, f.Name, v1alpha1.FeatureEnforced)
	}
	compliant := casePod(t, fc.allowed, ns, "compliant", fc.allowedAdapted != "")
	_, err = createPod(compliant)
	expectAdmitted(t, fmt.Sprintf("case %q", fc.allowed.Name), err)

	// Switch the feature off: no constraint enforces it any more (and when it was the only
	// feature enabled, the template and its constraint are gone), and the violating pod is
	// admitted.
	spec = deepCopyMap(spec)
	block, _ := spec[f.Name].(map[string]interface{})
	if block == nil {
		t.Fatalf("spec %s has no %s block", compactJSON(spec), f.Name)
	}
	block["enabled"] = false
	gen = setSpec(t, spec)
	waitFeature(t, gen, f.Name, v1alpha1.FeatureDisabled)
	onlyFeature := mustGetCR(t).Status.EnabledFeatures == 0
	eventually(t, 30*time.Second, fmt.Sprintf("no constraint to enforce %s once it is off (nor any policy object when it was the only feature)", f.Name), func() (bool, string) {
		ctx := context.Background()
		constraints, err := policyConstraints(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, c := range constraints {
			if _, ok, _ := unstructured.NestedMap(c.Object, "spec", "parameters", "features", f.Name); ok {
				return false, fmt.Sprintf("constraint %s still enforces it", c.GetName())
			}
		}
		if !onlyFeature {
			return true, ""
		}
		left, err := generatedObjects(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(left) == 0, fmt.Sprintf("still there: %v", left)
	})
	took := eventuallyAdmitted(t, 30*time.Second, "the violating pod after disabling "+f.Name, func(i int) *corev1.Pod {
		return casePod(t, fc.denied, ns, fmt.Sprintf("after-disable-%d", i), false)
	})
	t.Logf("violating pod admitted %s after the feature was reported Disabled and its objects were gone", took.Round(10*time.Millisecond))
}
