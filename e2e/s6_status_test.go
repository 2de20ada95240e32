//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// TestStatusFullSample: the full sample converges to every feature Enforced and Ready=True,
// `kubectl get psc` shows it, and pods that predate the policies show up after Gatekeeper's next
// audit as violation counts and samples in each feature's status.
func TestStatusFullSample(t *testing.T) {
	startScenario(t)
	// A namespace and pods that predate the policies.
	ns := newNamespace(t, "preexisting")
	createLegacyPods(t, ns)

	start := time.Now()
	gen := applyManifest(t, fullSamplePath())
	var firstEnforced time.Duration
	eventually(t, 60*time.Second, "all 17 features of the full sample to be Enforced with Ready=True", func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		if firstEnforced == 0 && cr.Status.EnforcedFeatures > 0 {
			firstEnforced = time.Since(start)
		}
		return isReady(cr, gen) && cr.Status.EnabledFeatures == 17 && cr.Status.EnforcedFeatures == 17, describeCR(cr)
	})
	took := time.Since(start)
	t.Logf("CONVERGENCE full sample: all 17 features Enforced and Ready=True %s after applying it (first feature Enforced after %s; goal <= 3s)",
		took.Round(10*time.Millisecond), firstEnforced.Round(10*time.Millisecond))
	if took > 3*time.Second {
		t.Logf("note: convergence took longer than the 3s goal (issue 13); on a loaded machine this is informational only")
	}

	cr := mustGetCR(t)
	status, reason := readyReason(cr)
	if status != "True" || reason != "Enforced" {
		t.Errorf("Ready = %s (%s), want True (Enforced)", status, reason)
	}
	if cr.Status.ObservedGeneration != gen {
		t.Errorf("status.observedGeneration = %d, want %d", cr.Status.ObservedGeneration, gen)
	}
	// One template for all features, one constraint: every feature of the full sample denies and
	// none has excludedNamespaces of its own.
	denyName := templates.ConstraintName(string(v1alpha1.EnforcementDeny))
	for _, f := range templates.Features() {
		fs, ok := featureStatus(cr, f.Name)
		switch {
		case !ok:
			t.Errorf("status has no entry for feature %s", f.Name)
		case fs.State != v1alpha1.FeatureEnforced || !fs.Enforced || !fs.TemplateCreated || fs.EnforcementAction != v1alpha1.EnforcementDeny:
			t.Errorf("status of %s: %+v; want Enforced, enforced, templateCreated, deny", f.Name, fs)
		}
		expectEnforcedBy(t, cr, f.Name, denyName)
	}
	left, err := generatedObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := sorted([]string{templates.PolicyKind + "/" + denyName, "ConstraintTemplate/" + templates.PolicyTemplateName}); strings.Join(left, ",") != strings.Join(want, ",") {
		t.Errorf("generated objects %v, want %v (one template, one constraint)", left, want)
	}

	out := kubectlGetPSC(t)
	row := tableRow(out)
	if row["NAME"] != "cluster" || row["ENABLED"] != "17" || row["ENFORCED"] != "17" || row["READY"] != "True" {
		t.Errorf("kubectl get psc: want NAME cluster, ENABLED 17, ENFORCED 17, READY True; got %v from:\n%s", row, out)
	}

	// New violating pods are denied, compliant ones admitted.
	fresh := newNamespace(t, "after-policy")
	for _, p := range legacyPods(fresh) {
		_, err := createPod(p)
		expectDenied(t, "creating "+p.Name+" under the full sample", err, "psc/")
	}
	if _, err := createPod(compliantPod(fresh, "compliant")); err != nil {
		t.Errorf("creating a compliant pod under the full sample: %v", err)
	}

	// After the next audit, the pods that predate the policies are counted. The CR's total is
	// the constraint's (exact); each feature's count and samples come from the violations
	// Gatekeeper keeps on the constraint (--constraint-violations-limit, 20 here), filtered by
	// the feature the message names, so they are exact only while the constraint has no more
	// violations than that. Gatekeeper's own status is the oracle.
	auditStart := time.Now()
	var total int64
	var kept []gatekeeperViolation
	eventually(t, auditTimeout, "the audit's violations of "+denyName+" to reach the CR's status", func() (bool, string) {
		var err error
		total, kept, err = constraintViolations(context.Background(), denyName)
		if err != nil {
			return false, err.Error()
		}
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("get: %v", err)
		}
		if total < 17 {
			return false, fmt.Sprintf("constraint %s: totalViolations %d, want >= 17 (each feature has at least one)", denyName, total)
		}
		if why := compareViolations(cr, denyName, total, kept); why != "" {
			return false, why
		}
		return true, ""
	})
	t.Logf("%s: %d violations, %d kept by Gatekeeper, reported in the CR %s after convergence", denyName, total, len(kept), time.Since(auditStart).Round(100*time.Millisecond))
	cr = mustGetCR(t)
	if total <= gatekeeperViolationsLimit {
		// Nothing was cut off: every feature reports its violation by the pre-existing pods.
		for _, f := range templates.Features() {
			waitViolationSample(t, f.Name, ns, legacyViolator(f.Name), "psc/"+f.Name+":", v1alpha1.EnforcementDeny)
		}
	}
	var sum int64
	for _, fs := range cr.Status.Features {
		sum += fs.TotalViolations
		if len(fs.Violations) > v1alpha1.MaxSampleViolations {
			t.Errorf("%s has %d violation samples, want at most %d", fs.Name, len(fs.Violations), v1alpha1.MaxSampleViolations)
		}
	}
	if sum != int64(len(kept)) || sum > cr.Status.TotalViolations {
		t.Errorf("the features' counts add up to %d, want the %d violations Gatekeeper kept (and at most status.totalViolations %d)", sum, len(kept), cr.Status.TotalViolations)
	}
	if row := tableRow(kubectlGetPSC(t)); row["VIOLATIONS"] != fmt.Sprint(cr.Status.TotalViolations) {
		t.Errorf("kubectl get psc shows VIOLATIONS %q, want %d", row["VIOLATIONS"], cr.Status.TotalViolations)
	}
}

// kubectlGetPSC runs `kubectl get psc` with $PSC_KUBECTL and logs its output.
func kubectlGetPSC(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := kubectl(ctx, "get", "psc")
	if err != nil {
		t.Fatalf("kubectl get psc: %v\n%s", err, out)
	}
	t.Logf("$ kubectl get psc\n%s", out)
	return out
}

// tableRow maps the column names of kubectl's table output to the values of its first row;
// columns are cut at the header's offsets, so that an empty cell stays empty.
func tableRow(out string) map[string]string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		return nil
	}
	header, data := lines[0], lines[1]
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	row := map[string]string{}
	for j, start := range starts {
		end := len(header)
		if j+1 < len(starts) {
			end = starts[j+1]
		}
		name := strings.TrimSpace(header[start:end])
		if start >= len(data) {
			row[name] = ""
			continue
		}
		row[name] = strings.TrimSpace(data[start:min(end, len(data))])
	}
	return row
}

// gatekeeperViolationsLimit is Gatekeeper's --constraint-violations-limit in the local cluster
// (hack/cluster-up.sh; Gatekeeper's default too): how many violations its audit keeps in a
// constraint's status.
const gatekeeperViolationsLimit = 20

// gatekeeperViolation is one of the violations Gatekeeper's audit keeps in a constraint's status.
type gatekeeperViolation struct {
	Kind, Namespace, Name, Message, EnforcementAction string
}

// constraintViolations reads the audit's results from a PSCPodSecurity constraint's status.
func constraintViolations(ctx context.Context, name string) (total int64, kept []gatekeeperViolation, err error) {
	c := policyConstraint(name)
	found, err := getObject(ctx, c)
	if err != nil || !found {
		return 0, nil, fmt.Errorf("constraint %s: found %v, err %v", name, found, err)
	}
	total, _, _ = unstructured.NestedInt64(c.Object, "status", "totalViolations")
	list, _, _ := unstructured.NestedSlice(c.Object, "status", "violations")
	for _, item := range list {
		m, _ := item.(map[string]interface{})
		str := func(k string) string { v, _ := m[k].(string); return v }
		kept = append(kept, gatekeeperViolation{Kind: str("kind"), Namespace: str("namespace"), Name: str("name"), Message: str("message"), EnforcementAction: str("enforcementAction")})
	}
	return total, kept, nil
}

// compareViolations explains how the CR's violation figures differ from what Gatekeeper reports
// on constraint name, which enforces every enabled feature ("" when they agree): the CR's total
// is the constraint's, each feature's count is the number of kept violations about it (the
// constraint's total for a feature alone in it), and each feature's samples are among them.
func compareViolations(cr *v1alpha1.PodSecurityConstraints, name string, total int64, kept []gatekeeperViolation) string {
	if cr.Status.TotalViolations != total {
		return fmt.Sprintf("status.totalViolations %d, the constraint's %d", cr.Status.TotalViolations, total)
	}
	perFeature := map[string][]gatekeeperViolation{}
	for _, v := range kept {
		f := featureOfAuditMessage(v.Message)
		perFeature[f] = append(perFeature[f], v)
	}
	if other := perFeature[""]; len(other) > 0 {
		return fmt.Sprintf("kept violations whose message names no feature: %+v", other)
	}
	var enforced []v1alpha1.FeatureStatus
	for _, fs := range cr.Status.Features {
		if fs.ConstraintName == name {
			enforced = append(enforced, fs)
		}
	}
	for _, fs := range enforced {
		want := perFeature[fs.Name]
		wantTotal := int64(len(want))
		if len(enforced) == 1 {
			wantTotal = total
		}
		if fs.TotalViolations != wantTotal {
			return fmt.Sprintf("%s: totalViolations %d, want %d (%d of the %d kept violations are about it)", fs.Name, fs.TotalViolations, wantTotal, len(want), len(kept))
		}
		if len(fs.Violations) != min(len(want), v1alpha1.MaxSampleViolations) {
			return fmt.Sprintf("%s: %d samples, want %d", fs.Name, len(fs.Violations), min(len(want), v1alpha1.MaxSampleViolations))
		}
		for _, s := range fs.Violations {
			found := false
			for _, v := range want {
				found = found || (v.Kind == s.Kind && v.Namespace == s.Namespace && v.Name == s.Name && v.Message == s.Message)
			}
			if !found {
				return fmt.Sprintf("%s: sample %+v is not among Gatekeeper's kept violations about it", fs.Name, s)
			}
		}
	}
	return ""
}

// featureOfAuditMessage is the feature an audit result is about, read here independently of the
// operator: every message of ours starts with "psc/<feature>: ", after the "[Implied by <name>] "
// prefixes Gatekeeper adds to the results of a workload's expanded pod.
func featureOfAuditMessage(msg string) string {
	for strings.HasPrefix(msg, "[Implied by ") {
		end := strings.Index(msg, "] ")
		if end < 0 {
			return ""
		}
		msg = msg[end+2:]
	}
	rest, ok := strings.CutPrefix(msg, "psc/")
	if !ok {
		return ""
	}
	name, _, ok := strings.Cut(rest, ": ")
	if _, known := templates.FeatureByName(name); !ok || !known {
		return ""
	}
	return name
}
