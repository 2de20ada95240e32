package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/templates"
)

// documents splits a multi-document YAML file.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) != "" {
			out = append(out, []byte(doc))
		}
	}
	return out
}

func TestClusterRoleIsLeastPrivilege(t *testing.T) {
	var role rbacv1.ClusterRole
	docs := documents(t, filepath.Join("rbac", "role.yaml"))
	if err := yaml.UnmarshalStrict(docs[0], &role); err != nil {
		t.Fatal(err)
	}
	var constraintResources []string
	for _, rule := range role.Rules {
		for _, g := range rule.APIGroups {
			for _, r := range rule.Resources {
				if g == "*" || r == "*" || slices.Contains(rule.Verbs, "*") {
					t.Errorf("wildcard in rule %+v", rule)
				}
				if g == "" && (r == "secrets" || r == "pods" || strings.HasPrefix(r, "pods/")) {
					t.Errorf("access to %s: the operator must not read secrets or pods", r)
				}
				if g == "apiextensions.k8s.io" && !slices.Equal(rule.Verbs, []string{"get", "list", "watch"}) {
					t.Errorf("CRD access must be read-only, got %v", rule.Verbs)
				}
				if g == "constraints.gatekeeper.sh" {
					constraintResources = append(constraintResources, r)
				}
			}
		}
	}
	var want []string
	for _, f := range templates.Features() {
		want = append(want, strings.ToLower(f.ConstraintKind()))
	}
	slices.Sort(want)
	slices.Sort(constraintResources)
	if !slices.Equal(constraintResources, want) {
		t.Errorf("constraint resources in RBAC %v, want exactly our kinds %v (update the rbac marker in controllers/)", constraintResources, want)
	}
}

func TestManagerRunsUnderRestrictedProfile(t *testing.T) {
	var deploy *appsv1.Deployment
	for _, doc := range documents(t, filepath.Join("manager", "manager.yaml")) {
		var probe struct{ Kind string }
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			t.Fatal(err)
		}
		if probe.Kind == "Deployment" {
			deploy = &appsv1.Deployment{}
			if err := yaml.UnmarshalStrict(doc, deploy); err != nil {
				t.Fatal(err)
			}
		}
	}
	if deploy == nil {
		t.Fatal("no Deployment in manager.yaml")
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	results := evaluator.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()},
		&deploy.Spec.Template.ObjectMeta, &deploy.Spec.Template.Spec)
	for _, r := range results {
		if !r.Allowed {
			t.Errorf("restricted profile: %s: %s", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}
	for _, c := range deploy.Spec.Template.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: root filesystem must be read-only", c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: resource requests and limits are required", c.Name)
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Errorf("container %s: liveness and readiness probes are required", c.Name)
		}
	}
}
