package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
				// Gatekeeper writes the ValidatingAdmissionPolicies and bindings
				// (spec.validatingAdmissionPolicy); the operator only reads them, and never
				// touches webhook configurations.
				if g == "admissionregistration.k8s.io" {
					if !slices.Equal(rule.Verbs, []string{"get", "list", "watch"}) {
						t.Errorf("admissionregistration access must be read-only, got %v", rule.Verbs)
					}
					if r != "validatingadmissionpolicies" && r != "validatingadmissionpolicybindings" {
						t.Errorf("admissionregistration access is for ValidatingAdmissionPolicies and their bindings only, got %s", r)
					}
				}
				if g == "constraints.gatekeeper.sh" {
					constraintResources = append(constraintResources, r)
				}
			}
		}
	}
	// The policy template's kind (every feature), plus the admission probe's policy
	// (controllers/probe_policy.go).
	want := []string{"pscadmissionprobe", strings.ToLower(templates.PolicyKind)}
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

// TestProbeNamespace: the admission probe's namespace grants the operator nothing but pod
// creation there, allows no pod to exist, and enforces the restricted profile.
func TestProbeNamespace(t *testing.T) {
	var (
		ns      corev1.Namespace
		quota   corev1.ResourceQuota
		role    rbacv1.Role
		binding rbacv1.RoleBinding
		sa      corev1.ServiceAccount
	)
	seen := map[string]bool{}
	for _, doc := range documents(t, filepath.Join("probe", "probe.yaml")) {
		var head struct{ Kind string }
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		targets := map[string]interface{}{"Namespace": &ns, "ResourceQuota": &quota, "Role": &role, "RoleBinding": &binding, "ServiceAccount": &sa}
		target, ok := targets[head.Kind]
		if !ok {
			t.Fatalf("unexpected kind %q in probe.yaml", head.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			t.Fatal(err)
		}
		seen[head.Kind] = true
	}
	if len(seen) != 5 {
		t.Fatalf("probe.yaml holds %v, want a Namespace, ResourceQuota, ServiceAccount, Role and RoleBinding", seen)
	}
	const name = "psc-probe"
	if ns.Name != name || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s labels %v: want %s enforcing the restricted profile", ns.Name, ns.Labels, name)
	}
	if _, ok := ns.Labels["admission.gatekeeper.sh/ignore"]; ok {
		t.Error("the probe namespace must not be exempt from Gatekeeper")
	}
	for _, obj := range []string{quota.Namespace, role.Namespace, binding.Namespace, sa.Namespace} {
		if obj != name {
			t.Errorf("object in namespace %q, want %s", obj, name)
		}
	}
	// Names the operator relies on (controllers/probe.go).
	if quota.Name != "psc-admission-probe" || sa.Name != "psc-admission-probe" {
		t.Errorf("quota %q and service account %q must be named psc-admission-probe", quota.Name, sa.Name)
	}
	if q := quota.Spec.Hard[corev1.ResourcePods]; len(quota.Spec.Hard) != 1 || !q.IsZero() {
		t.Errorf("quota %v: want exactly pods: 0", quota.Spec.Hard)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the probe's service account must not mount a token")
	}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].APIGroups, []string{""}) || !slices.Equal(role.Rules[0].Resources, []string{"pods"}) ||
		!slices.Equal(role.Rules[0].Verbs, []string{"create"}) || len(role.Rules[0].ResourceNames) != 0 {
		t.Errorf("role rules %+v: want exactly create pods", role.Rules)
	}
	if binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != "psc-operator" || binding.Subjects[0].Namespace != "psc-system" {
		t.Errorf("role binding %+v: want the Role bound to the operator's service account psc-system/psc-operator", binding)
	}
}
