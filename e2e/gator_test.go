//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podsecurity/psc-operator/templates"
)

// TestRenderedObjectsPassGator renders the full sample with the psc render command and
// evaluates the output with Gatekeeper's gator: every template must compile in Gatekeeper's
// own reader, the compliant pod must pass, and the all-violating pod must be caught by every
// feature.
func TestRenderedObjectsPassGator(t *testing.T) {
	gator := gatorBinary(t)
	dir := t.TempDir()
	rendered := filepath.Join(dir, "rendered.yaml")
	out := runPSC(t, nil, "render", "-f", filepath.Join("..", "config", "samples", "policy_v1alpha1_podsecurityconstraints_full.yaml"))
	if err := os.WriteFile(rendered, out, 0o600); err != nil {
		t.Fatal(err)
	}

	gatorTest := func(pod string) (string, int) {
		return runGatorTest(t, gator, rendered, filepath.Join("..", "templates", "testdata", "pods", pod))
	}

	if output, code := gatorTest("compliant.yaml"); code != 0 || strings.TrimSpace(output) != "" {
		t.Errorf("gator on the compliant pod: exit %d, output:\n%s", code, output)
	}
	output, code := gatorTest("all-violating.yaml")
	if code == 0 {
		t.Errorf("gator admitted the all-violating pod:\n%s", output)
	}
	for _, f := range templates.Features() {
		if !strings.Contains(output, `"psc/`+f.Name+`:`) {
			t.Errorf("gator output has no violation of %s:\n%s", f.Name, output)
		}
	}
}

// TestRenderedExpansionsCatchWorkloadsInGator: gator applies the rendered ExpansionTemplates,
// so a Deployment whose pods would be privileged is reported with the feature's message,
// attributed to the Deployment's ExpansionTemplate.
func TestRenderedExpansionsCatchWorkloadsInGator(t *testing.T) {
	gator := gatorBinary(t)
	rendered := filepath.Join(t.TempDir(), "rendered.yaml")
	out := runPSC(t, nil, "render", "-f", filepath.Join("..", "config", "samples", "policy_v1alpha1_podsecurityconstraints_full.yaml"))
	if !strings.Contains(string(out), "kind: ExpansionTemplate") {
		t.Fatal("the rendered full sample has no ExpansionTemplate")
	}
	if err := os.WriteFile(rendered, out, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, code := runGatorTest(t, gator, rendered, filepath.Join("testdata", "privileged-deployment.yaml"))
	// gator prints each message as a quoted string.
	output := strings.ReplaceAll(raw, `\"`, `"`)
	if code == 0 {
		t.Fatalf("gator test of a privileged Deployment: exit status 0, want 1 with violations:\n%s", output)
	}
	for _, want := range []string{"[Implied by psc-deployment]", `psc/privilegedContainers: container "app" is privileged`} {
		if !strings.Contains(output, want) {
			t.Errorf("gator output lacks %q:\n%s", want, output)
		}
	}
}

// runGatorTest runs `gator test` on the files and returns its output (standard output, plus
// standard error when it fails) and exit code; gator itself failing to start is fatal.
func runGatorTest(t *testing.T, gator string, files ...string) (string, int) {
	t.Helper()
	args := []string{"test"}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	cmd := exec.Command(gator, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &exit):
		return stdout.String() + stderr.String(), exit.ExitCode()
	}
	t.Fatalf("running gator: %v", err)
	return "", -1
}

// gatorBinary is Gatekeeper's gator (PSC_GATOR, set by make test-e2e).
func gatorBinary(t *testing.T) string {
	t.Helper()
	gator := os.Getenv("PSC_GATOR")
	if gator == "" {
		t.Fatal("PSC_GATOR must be set: run with make test-e2e")
	}
	return gator
}

// runPSC runs the psc command line (PSC_CLI, bin/psc, set by make test-e2e) with args and
// stdin (nil for none) and returns its standard output; a failure ends the test.
func runPSC(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cli := os.Getenv("PSC_CLI")
	if cli == "" {
		t.Fatal("PSC_CLI must be set: run with make test-e2e")
	}
	cmd := exec.Command(cli, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("psc %s: %v", strings.Join(args, " "), err)
	}
	return out
}
