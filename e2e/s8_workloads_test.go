//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// runnerCRD is a test workload kind (e2e.podsecurity.dev/v1 Runner) that embeds a pod
// template at spec.template, as Argo Rollouts do.
func runnerCRD() *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "runners.e2e.podsecurity.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "e2e.podsecurity.dev",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: "Runner", ListKind: "RunnerList", Plural: "runners", Singular: "runner"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}},
			}},
		},
	}
}

// workloadManifest is a manifest of a workload kind whose pod template has one container "app"
// with the given image, privileged or not, and hostPID or not.
func workloadManifest(kind, ns, name, image string, privileged, hostPID bool) string {
	tmpl := fmt.Sprintf(`metadata:
  labels: {app: %[1]s}
spec:
  hostPID: %[4]t
  automountServiceAccountToken: false
  restartPolicy: %[5]s
  containers:
  - name: app
    image: %[2]s
    securityContext: {privileged: %[3]t}`, name, image, privileged, hostPID, restartPolicy(kind))
	indent := func(s string, n int) string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
	}
	head := func(apiVersion string) string {
		return fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n", apiVersion, kind, name, ns)
	}
	selector := fmt.Sprintf("  selector:\n    matchLabels: {app: %s}\n", name)
	switch kind {
	case "Deployment", "ReplicaSet", "DaemonSet":
		return head("apps/v1") + selector + "  template:\n" + indent(tmpl, 4) + "\n"
	case "StatefulSet":
		return head("apps/v1") + selector + "  serviceName: " + name + "\n  template:\n" + indent(tmpl, 4) + "\n"
	case "Job":
		return head("batch/v1") + "  template:\n" + indent(tmpl, 4) + "\n"
	case "CronJob":
		return head("batch/v1") + "  schedule: \"0 0 1 1 *\"\n  jobTemplate:\n    spec:\n      template:\n" + indent(tmpl, 8) + "\n"
	case "ReplicationController":
		return head("v1") + fmt.Sprintf("  selector: {app: %s}\n", name) + "  template:\n" + indent(tmpl, 4) + "\n"
	case "Runner":
		return head("e2e.podsecurity.dev/v1") + "  template:\n" + indent(tmpl, 4) + "\n"
	}
	panic("unknown kind " + kind)
}

func restartPolicy(kind string) string {
	if kind == "Job" || kind == "CronJob" {
		return "Never"
	}
	return "Always"
}

// kubectlApply runs kubectl apply on a manifest (extra arguments such as --dry-run=server
// first) and returns its combined output.
func kubectlApply(t testing.TB, manifest string, args ...string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "workload.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return kubectl(ctx, append(append([]string{"apply"}, args...), "-f", path)...)
}

// expectApplyDenied fails unless kubectl's output is Gatekeeper's denial with every message.
func expectApplyDenied(t testing.TB, what, out string, err error, messages ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: admitted (%s), want denied with %q", what, strings.TrimSpace(out), messages)
		return
	}
	if !strings.Contains(out, gatekeeperDenial) {
		t.Errorf("%s: failed, but not with a denial by Gatekeeper's webhook:\n%s", what, out)
		return
	}
	for _, m := range messages {
		if !strings.Contains(out, m) {
			t.Errorf("%s: kubectl's output lacks %q:\n%s", what, m, out)
		}
	}
}

// impliedBy is the prefix Gatekeeper gives a result on the Pod a workload would create.
func impliedBy(kind string) string {
	for _, w := range templates.BuiltInWorkloadKinds() {
		if w.GVK.Kind == kind {
			return "[Implied by " + w.ExpansionName() + "]"
		}
	}
	panic("not a built-in workload kind: " + kind)
}

// ourExpansionNames lists the ExpansionTemplates the operator generated.
func ourExpansionNames(ctx context.Context) ([]string, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(templates.ExpansionGVK.GroupVersion().WithKind("ExpansionTemplateList"))
	if err := k8s.List(ctx, list, client.MatchingLabels{templates.LabelManagedBy: templates.ManagedByValue}); err != nil {
		return nil, err
	}
	var out []string
	for _, o := range list.Items {
		out = append(out, o.GetName())
	}
	return out, nil
}

// waitWorkloadsChecked waits until WorkloadsChecked has the status for generation gen.
func waitWorkloadsChecked(t testing.TB, gen int64, status metav1.ConditionStatus) {
	t.Helper()
	eventually(t, enforceTimeout, "WorkloadsChecked "+string(status), func() (bool, string) {
		cr, err := getCR(context.Background())
		if err != nil || cr == nil {
			return false, fmt.Sprintf("reading the CR: %v", err)
		}
		c := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionWorkloadsChecked)
		if c == nil || c.ObservedGeneration < gen || c.Status != status {
			return false, fmt.Sprintf("%+v", c)
		}
		return true, ""
	})
}

// controllerManagerRunning reports whether kube-controller-manager runs in the cluster (it
// holds its leader election lease), so that workloads create pods.
func controllerManagerRunning(ctx context.Context) bool {
	lease := &coordinationv1.Lease{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "kube-controller-manager"}, lease); err != nil {
		return false
	}
	return lease.Spec.RenewTime != nil && time.Since(lease.Spec.RenewTime.Time) < time.Minute
}

// TestWorkloads: every built-in workload kind (and an extraKinds kind) whose pods would violate
// a feature is denied at kubectl apply and at --dry-run=server with the feature's message; the
// compliant one is admitted; an update introducing a violation is denied; exclusions and
// exemptions hold; workloads.enforcementAction warn admits with the warning; workloads.enabled
// false prunes the ExpansionTemplates and admits.
func TestWorkloads(t *testing.T) {
	startScenario(t)
	ctx := context.Background()
	ns := newNamespace(t, "workloads")
	excluded := newNamespace(t, "wl-excluded")

	crd := runnerCRD()
	if err := k8s.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the Runner CRD: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), crd) })
	eventually(t, 30*time.Second, "the Runner CRD to be established", func() (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(crd), crd); err != nil {
			return false, err.Error()
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, ""
			}
		}
		return false, "not established"
	})

	spec := map[string]interface{}{
		"excludedNamespaces":   []interface{}{"kube-system", excluded},
		"exemptImages":         []interface{}{"registry.example.com/debug/*"},
		"privilegedContainers": map[string]interface{}{"enabled": true},
		"hostNamespaces":       map[string]interface{}{"enabled": true},
		"workloads": map[string]interface{}{"extraKinds": []interface{}{map[string]interface{}{
			"group": "e2e.podsecurity.dev", "version": "v1", "kind": "Runner", "templatePath": "spec.template",
		}}},
	}
	gen := setSpec(t, spec)
	waitReady(t, gen, enforceTimeout)
	waitWorkloadsChecked(t, gen, metav1.ConditionTrue)

	kinds := []string{"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicationController"}
	withPods := controllerManagerRunning(ctx)
	if !withPods {
		t.Log("kube-controller-manager is not running: compliant workloads are admitted, but their pods are not checked for creation")
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			name := "wl-" + strings.ToLower(kind)
			bad := workloadManifest(kind, ns, name+"-priv", "nginx", true, false)
			out, err := kubectlApply(t, bad, "--dry-run=server")
			expectApplyDenied(t, "kubectl apply --dry-run=server of a privileged "+kind, out, err, impliedBy(kind), privilegedMessage)
			out, err = kubectlApply(t, bad)
			expectApplyDenied(t, "kubectl apply of a privileged "+kind, out, err, impliedBy(kind), privilegedMessage)

			good := workloadManifest(kind, ns, name, "nginx", false, false)
			if out, err := kubectlApply(t, good); err != nil {
				t.Fatalf("kubectl apply of a compliant %s: %v\n%s", kind, err, out)
			}
			if withPods && kind != "CronJob" {
				eventually(t, 90*time.Second, "pods of the compliant "+kind, func() (bool, string) {
					pods := &corev1.PodList{}
					if err := k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": name}); err != nil {
						return false, err.Error()
					}
					if len(pods.Items) == 0 {
						return false, "no pods yet"
					}
					return true, ""
				})
			}
		})
	}

	t.Run("update introducing a violation", func(t *testing.T) {
		out, err := kubectlApply(t, workloadManifest("Deployment", ns, "wl-deployment", "nginx", false, true))
		expectApplyDenied(t, "updating a compliant Deployment to hostPID", out, err, impliedBy("Deployment"), hostPIDMessage)
	})

	t.Run("excluded namespace and exempt image", func(t *testing.T) {
		if out, err := kubectlApply(t, workloadManifest("Deployment", excluded, "privileged", "nginx", true, false)); err != nil {
			t.Errorf("a privileged Deployment in the excluded namespace %s was denied: %v\n%s", excluded, err, out)
		}
		if out, err := kubectlApply(t, workloadManifest("Deployment", ns, "exempt", "registry.example.com/debug/tool:1", true, false)); err != nil {
			t.Errorf("a privileged Deployment of an exempt image was denied: %v\n%s", err, out)
		}
	})

	t.Run("extra kind", func(t *testing.T) {
		out, err := kubectlApply(t, workloadManifest("Runner", ns, "runner", "nginx", true, false))
		expectApplyDenied(t, "kubectl apply of a privileged Runner (extraKinds)", out, err, "[Implied by psc-runner.e2e.podsecurity.dev]", privilegedMessage)
		if out, err := kubectlApply(t, workloadManifest("Runner", ns, "runner", "nginx", false, false)); err != nil {
			t.Errorf("a compliant Runner was denied: %v\n%s", err, out)
		}
	})

	t.Run("warn for workloads only", func(t *testing.T) {
		spec["workloads"].(map[string]interface{})["enforcementAction"] = "warn"
		gen := setSpec(t, spec)
		waitReady(t, gen, enforceTimeout)
		manifest := workloadManifest("Deployment", ns, "warned", "nginx", true, false)
		var out string
		eventually(t, enforceTimeout, "a privileged Deployment to be admitted with a warning", func() (bool, string) {
			var err error
			out, err = kubectlApply(t, manifest, "--dry-run=server")
			return err == nil, out
		})
		out, err := kubectlApply(t, manifest)
		if err != nil {
			t.Fatalf("a privileged Deployment under workloads.enforcementAction warn: %v\n%s", err, out)
		}
		if !strings.Contains(out, "Warning:") || !strings.Contains(out, impliedBy("Deployment")) || !strings.Contains(out, privilegedMessage) {
			t.Errorf("kubectl apply printed no warning naming the feature and container:\n%s", out)
		}
		_, err = createPod(privilegedPod(ns, "still-denied", "nginx"))
		expectDenied(t, "a privileged pod while workloads only warn", err, privilegedMessage)
	})

	t.Run("audit reports workloads with their kind", func(t *testing.T) {
		// The Deployment admitted under warn violates privilegedContainers; audit expands it.
		eventually(t, auditTimeout, "an audit violation of Deployment "+ns+"/warned in the CR's status", func() (bool, string) {
			cr, err := getCR(ctx)
			if err != nil || cr == nil {
				return false, fmt.Sprintf("get: %v", err)
			}
			fs, _ := featureStatus(cr, "privilegedContainers")
			for _, v := range fs.Violations {
				if v.Kind == "Deployment" && v.Namespace == ns && v.Name == "warned" &&
					strings.Contains(v.Message, impliedBy("Deployment")) && strings.Contains(v.Message, privilegedMessage) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("totalViolations %d, samples %+v", fs.TotalViolations, fs.Violations)
		})
	})

	t.Run("workloads disabled", func(t *testing.T) {
		spec["workloads"] = map[string]interface{}{"enabled": false}
		gen := setSpec(t, spec)
		waitReady(t, gen, enforceTimeout)
		waitWorkloadsChecked(t, gen, metav1.ConditionFalse)
		eventually(t, enforceTimeout, "the ExpansionTemplates to be pruned", func() (bool, string) {
			names, err := ourExpansionNames(ctx)
			if err != nil {
				return false, err.Error()
			}
			return len(names) == 0, fmt.Sprint(names)
		})
		manifest := workloadManifest("Deployment", ns, "unchecked", "nginx", true, false)
		eventually(t, enforceTimeout, "a privileged Deployment to be admitted", func() (bool, string) {
			out, err := kubectlApply(t, manifest)
			return err == nil, out
		})
		_, err := createPod(privilegedPod(ns, "denied-pod", "nginx"))
		expectDenied(t, "a privileged pod while workloads are off", err, privilegedMessage)
	})

	// Workloads are not cleaned up by the namespace (no namespace controller runs here).
	t.Cleanup(func() {
		for _, kind := range append(kinds, "Runner") {
			gvk := map[string]string{"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
				"Job": "batch/v1", "CronJob": "batch/v1", "ReplicationController": "v1", "Runner": "e2e.podsecurity.dev/v1"}[kind]
			list := &unstructured.UnstructuredList{}
			list.SetAPIVersion(gvk)
			list.SetKind(kind + "List")
			for _, n := range []string{ns, excluded} {
				if err := k8s.List(context.Background(), list, client.InNamespace(n)); err != nil {
					continue
				}
				for i := range list.Items {
					_ = k8s.Delete(context.Background(), &list.Items[i], client.PropagationPolicy(metav1.DeletePropagationBackground))
				}
			}
		}
	})
}
