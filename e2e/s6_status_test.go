//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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
	t.Logf("CONVERGENCE full sample: all 17 features Enforced and Ready=True %s after applying it (first feature Enforced after %s; goal < 10s)",
		took.Round(10*time.Millisecond), firstEnforced.Round(10*time.Millisecond))
	if took > 10*time.Second {
		t.Logf("note: convergence took longer than the 10s goal")
	}

	cr := mustGetCR(t)
	status, reason := readyReason(cr)
	if status != "True" || reason != "Enforced" {
		t.Errorf("Ready = %s (%s), want True (Enforced)", status, reason)
	}
	if cr.Status.ObservedGeneration != gen {
		t.Errorf("status.observedGeneration = %d, want %d", cr.Status.ObservedGeneration, gen)
	}
	for _, f := range templates.Features() {
		fs, ok := featureStatus(cr, f.Name)
		switch {
		case !ok:
			t.Errorf("status has no entry for feature %s", f.Name)
		case fs.State != v1alpha1.FeatureEnforced || !fs.Enforced || !fs.TemplateCreated || fs.EnforcementAction != v1alpha1.EnforcementDeny ||
			fs.TemplateName != f.TemplateName() || fs.ConstraintKind != f.ConstraintKind() || fs.ConstraintName != f.ConstraintName():
			t.Errorf("status of %s: %+v; want Enforced, enforced, templateCreated, deny, template %s, constraint %s/%s",
				f.Name, fs, f.TemplateName(), f.ConstraintKind(), f.ConstraintName())
		}
	}
	left, err := generatedObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 34 {
		t.Errorf("found %d generated objects, want 17 templates and 17 constraints: %v", len(left), left)
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

	// After the next audit, the pods that predate the policies are reported by every feature.
	auditStart := time.Now()
	for _, f := range templates.Features() {
		waitViolationSample(t, f.Name, ns, legacyViolator(f.Name), "psc/"+f.Name+":", v1alpha1.EnforcementDeny)
	}
	t.Logf("every feature reported its violation by the pre-existing pods %s after convergence", time.Since(auditStart).Round(100*time.Millisecond))
	cr = mustGetCR(t)
	if cr.Status.TotalViolations < 15 {
		t.Errorf("status.totalViolations = %d, want >= 15 (each feature has at least one)", cr.Status.TotalViolations)
	}
	var sum int64
	for _, fs := range cr.Status.Features {
		sum += fs.TotalViolations
		if len(fs.Violations) > v1alpha1.MaxSampleViolations {
			t.Errorf("%s has %d violation samples, want at most %d", fs.Name, len(fs.Violations), v1alpha1.MaxSampleViolations)
		}
	}
	if sum != cr.Status.TotalViolations {
		t.Errorf("status.totalViolations = %d, but the features' counts add up to %d", cr.Status.TotalViolations, sum)
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
