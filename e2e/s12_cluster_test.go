//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// The local cluster itself (hack/cluster-up.sh), as the workload and mutation features rely on
// it: kube-controller-manager turns Deployments into ReplicaSets and Pods, garbage-collects
// them, creates ServiceAccounts and their tokens; Gatekeeper's mutating webhook applies mutators.
// These scenarios create no PodSecurityConstraints, so no policy of ours is involved.

// clusterTimeout bounds the wait for a controller of kube-controller-manager, or Gatekeeper's
// mutation system, to act.
const clusterTimeout = 60 * time.Second

// TestControllerManager: a Deployment creates its ReplicaSet and its Pod (which stays Pending:
// there is no scheduler), and deleting the Deployment garbage-collects both. Each namespace gets
// its "default" ServiceAccount (so the ServiceAccount admission plugin admits pods, and gives
// them the kube-api-access volume), the kube-root-ca.crt ConfigMap, and Secret-based tokens.
func TestControllerManager(t *testing.T) {
	startScenario(t)
	ns := newNamespace(t, "kcm")
	ctx := context.Background()

	eventually(t, clusterTimeout, "the serviceaccount controller to create "+ns+"/default", func() (bool, string) {
		_, err := clientset.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	eventually(t, clusterTimeout, "the root-ca-certificate-publisher to create "+ns+"/kube-root-ca.crt", func() (bool, string) {
		cm, err := clientset.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(cm.Data["ca.crt"], "BEGIN CERTIFICATE"), fmt.Sprintf("data keys %v", keys(cm.Data))
	})

	t.Run("service account token secret", func(t *testing.T) {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-token",
				Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
			Type: corev1.SecretTypeServiceAccountToken,
		}
		if _, err := clientset.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating a service-account-token Secret: %v", err)
		}
		eventually(t, clusterTimeout, "the serviceaccount-token controller to fill in "+ns+"/default-token", func() (bool, string) {
			s, err := clientset.CoreV1().Secrets(ns).Get(ctx, "default-token", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			// A JWT: three base64url parts.
			return strings.Count(string(s.Data[corev1.ServiceAccountTokenKey]), ".") == 2 && len(s.Data[corev1.ServiceAccountRootCAKey]) > 0,
				fmt.Sprintf("data keys %v", keys(s.Data))
		})
	})

	labels := map[string]string{"app": "kcm-e2e"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptrTo[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
			},
		},
	}
	dep, err := clientset.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Deployment %s/web: %v", ns, err)
	}

	var rs appsv1.ReplicaSet
	took := eventually(t, clusterTimeout, "the Deployment's ReplicaSet", func() (bool, string) {
		list, err := clientset.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, r := range list.Items {
			if controlledBy(r.OwnerReferences, dep.UID) {
				rs = r
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d ReplicaSets, none controlled by the Deployment", len(list.Items))
	})
	t.Logf("ReplicaSet %s created %s after the Deployment", rs.Name, took.Round(100*time.Millisecond))

	var pod corev1.Pod
	took = eventually(t, clusterTimeout, "the ReplicaSet's Pod", func() (bool, string) {
		list, err := clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range list.Items {
			if controlledBy(p.OwnerReferences, rs.UID) {
				pod = p
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d Pods, none controlled by ReplicaSet %s", len(list.Items), rs.Name)
	})
	t.Logf("Pod %s created %s after the ReplicaSet", pod.Name, took.Round(100*time.Millisecond))

	// The ServiceAccount admission plugin is on: the pod runs as "default" with a projected token.
	if pod.Spec.ServiceAccountName != "default" {
		t.Errorf("pod %s: serviceAccountName %q, want \"default\" (ServiceAccount admission)", pod.Name, pod.Spec.ServiceAccountName)
	}
	if !hasKubeAPIAccessVolume(pod.Spec.Volumes) {
		t.Errorf("pod %s has no projected kube-api-access-* volume (ServiceAccount admission); volumes: %s", pod.Name, compactJSON(pod.Spec.Volumes))
	}
	if pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" {
		t.Errorf("pod %s: phase %q on node %q; want Pending and unscheduled (no scheduler)", pod.Name, pod.Status.Phase, pod.Spec.NodeName)
	}

	// Deleting the Deployment (background propagation, kubectl's default) leaves its dependents
	// to the garbage collector.
	background := metav1.DeletePropagationBackground
	if err := clientset.AppsV1().Deployments(ns).Delete(ctx, dep.Name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatalf("deleting the Deployment: %v", err)
	}
	took = eventually(t, clusterTimeout, "the garbage collector to delete the ReplicaSet and the Pod", func() (bool, string) {
		var left []string
		if _, err := clientset.AppsV1().ReplicaSets(ns).Get(ctx, rs.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, fmt.Sprintf("ReplicaSet %s (%v)", rs.Name, err))
		}
		p, err := clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		// A Pod that was never bound to a node is deleted at once, without a grace period.
		if !apierrors.IsNotFound(err) && (err != nil || p.UID == pod.UID) {
			left = append(left, fmt.Sprintf("Pod %s (%v)", pod.Name, err))
		}
		return len(left) == 0, strings.Join(left, ", ") + " still there"
	})
	t.Logf("ReplicaSet and Pod garbage-collected %s after the Deployment was deleted", took.Round(100*time.Millisecond))
}

// TestGatekeeperMutation: Gatekeeper runs its mutation webhook, registered by a
// MutatingWebhookConfiguration like its chart's. An Assign mutator limited to this test's
// namespace completes a created Pod (a field left unset is set, one set explicitly is kept);
// mutation-status reports the mutator enforced.
func TestGatekeeperMutation(t *testing.T) {
	startScenario(t)
	ns := newNamespace(t, "mutation")
	ctx := context.Background()

	mwh, err := clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "gatekeeper-mutating-webhook-configuration", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Gatekeeper's MutatingWebhookConfiguration: %v", err)
	}
	if len(mwh.Webhooks) != 1 || mwh.Webhooks[0].ClientConfig.URL == nil || !strings.HasSuffix(*mwh.Webhooks[0].ClientConfig.URL, "/v1/mutate") {
		t.Fatalf("Gatekeeper's MutatingWebhookConfiguration does not call /v1/mutate: %s", compactJSON(mwh.Webhooks))
	}

	assign := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "mutations.gatekeeper.sh/v1",
		"kind":       "Assign",
		"metadata":   map[string]interface{}{"name": "e2e-" + runID + "-read-only-root"},
		"spec": map[string]interface{}{
			"applyTo": []interface{}{map[string]interface{}{
				"groups": []interface{}{""}, "kinds": []interface{}{"Pod"}, "versions": []interface{}{"v1"},
			}},
			"match": map[string]interface{}{
				"scope":      "Namespaced",
				"kinds":      []interface{}{map[string]interface{}{"apiGroups": []interface{}{""}, "kinds": []interface{}{"Pod"}}},
				"namespaces": []interface{}{ns},
			},
			"location": "spec.containers[name:*].securityContext.readOnlyRootFilesystem",
			"parameters": map[string]interface{}{
				"pathTests": []interface{}{map[string]interface{}{
					"subPath":   "spec.containers[name:*].securityContext.readOnlyRootFilesystem",
					"condition": "MustNotExist",
				}},
				"assign": map[string]interface{}{"value": true},
			},
		},
	}}
	if err := k8s.Create(ctx, assign); err != nil {
		t.Fatalf("creating Assign %s: %v", assign.GetName(), err)
	}
	t.Cleanup(func() {
		if err := k8s.Delete(context.Background(), assign); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: deleting Assign %s: %v", assign.GetName(), err)
		}
	})

	// mutation-status: the mutator's byPod status says Gatekeeper enforces it.
	eventually(t, clusterTimeout, "Assign "+assign.GetName()+" to be enforced (status.byPod)", func() (bool, string) {
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(schema.GroupVersionKind{Group: "mutations.gatekeeper.sh", Version: "v1", Kind: "Assign"})
		if err := k8s.Get(ctx, types.NamespacedName{Name: assign.GetName()}, cur); err != nil {
			return false, err.Error()
		}
		byPod, _, _ := unstructured.NestedSlice(cur.Object, "status", "byPod")
		for _, p := range byPod {
			if m, ok := p.(map[string]interface{}); ok && m["enforced"] == true {
				return true, ""
			}
		}
		return false, fmt.Sprintf("status.byPod %s", compactJSON(byPod))
	})

	mkPod := func(name string) *corev1.Pod {
		p := simplePod(ns, name, "nginx")
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
			Name: "explicit", Image: "nginx",
			SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptrTo(false)},
		})
		return p
	}
	rorf := func(c corev1.Container) string {
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil {
			return "unset"
		}
		return fmt.Sprint(*c.SecurityContext.ReadOnlyRootFilesystem)
	}
	// The webhook picks the mutator up from its cache shortly after the status is written: retry
	// server-side dry runs until the mutation shows, then create the pod for real.
	attempt := 0
	eventually(t, clusterTimeout, "a dry-run pod to be mutated", func() (bool, string) {
		attempt++
		p, err := clientset.CoreV1().Pods(ns).Create(ctx, mkPod(fmt.Sprintf("dry-%d", attempt)), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err.Error()
		}
		return rorf(p.Spec.Containers[0]) == "true", "readOnlyRootFilesystem of container app: " + rorf(p.Spec.Containers[0])
	})
	if _, err := createPod(mkPod("mutated")); err != nil {
		t.Fatalf("creating pod %s/mutated: %v", ns, err)
	}
	stored, err := clientset.CoreV1().Pods(ns).Get(ctx, "mutated", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rorf(stored.Spec.Containers[0]); got != "true" {
		t.Errorf("stored pod, container app: readOnlyRootFilesystem %s, want true (set by the Assign)", got)
	}
	if got := rorf(stored.Spec.Containers[1]); got != "false" {
		t.Errorf("stored pod, container explicit: readOnlyRootFilesystem %s, want false (explicit values are kept)", got)
	}

	// Outside the mutator's namespace nothing changes.
	other := newNamespace(t, "mutation-other")
	p, err := clientset.CoreV1().Pods(other).Create(ctx, simplePod(other, "untouched", "nginx"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry-run pod in %s: %v", other, err)
	}
	if got := rorf(p.Spec.Containers[0]); got != "unset" {
		t.Errorf("pod in %s (not matched by the Assign): readOnlyRootFilesystem %s, want unset", other, got)
	}
}

// TestGatekeeperExpansion: Gatekeeper judges a Deployment as the Pod it would create: the
// ExpansionTemplate CRD is installed, generator resource expansion is on and the validating
// webhook receives workload kinds. A throwaway template denies pods labelled e2e-deny=yes in this
// test's namespace only.
func TestGatekeeperExpansion(t *testing.T) {
	startScenario(t)
	ns := newNamespace(t, "expansion")
	ctx := context.Background()
	kind := "E2eExpand" + runID
	name := strings.ToLower(kind) // a template's name is its constraint kind in lower case

	objs := []*unstructured.Unstructured{
		{Object: map[string]interface{}{
			"apiVersion": "templates.gatekeeper.sh/v1",
			"kind":       "ConstraintTemplate",
			"metadata":   map[string]interface{}{"name": name},
			"spec": map[string]interface{}{
				"crd": map[string]interface{}{"spec": map[string]interface{}{"names": map[string]interface{}{"kind": kind}}},
				"targets": []interface{}{map[string]interface{}{
					"target": "admission.k8s.gatekeeper.sh",
					"rego": "package " + name + "\n" +
						"violation[{\"msg\": msg}] {\n" +
						"  input.review.object.metadata.labels[\"e2e-deny\"] == \"yes\"\n" +
						"  msg := sprintf(\"%v %v is labelled e2e-deny=yes\", [input.review.kind.kind, input.review.object.metadata.name])\n" +
						"}\n",
				}},
			},
		}},
		{Object: map[string]interface{}{
			"apiVersion": "expansion.gatekeeper.sh/v1beta1",
			"kind":       "ExpansionTemplate",
			"metadata":   map[string]interface{}{"name": "e2e-" + runID + "-deployments"},
			"spec": map[string]interface{}{
				"applyTo":        []interface{}{map[string]interface{}{"groups": []interface{}{"apps"}, "kinds": []interface{}{"Deployment"}, "versions": []interface{}{"v1"}}},
				"templateSource": "spec.template",
				"generatedGVK":   map[string]interface{}{"group": "", "version": "v1", "kind": "Pod"},
			},
		}},
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	constraint := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "constraints.gatekeeper.sh/v1beta1",
		"kind":       kind,
		"metadata":   map[string]interface{}{"name": "e2e-deny-label"},
		"spec": map[string]interface{}{"match": map[string]interface{}{
			"kinds":      []interface{}{map[string]interface{}{"apiGroups": []interface{}{""}, "kinds": []interface{}{"Pod"}}},
			"namespaces": []interface{}{ns},
		}},
	}}
	t.Cleanup(func() {
		for _, o := range append([]*unstructured.Unstructured{constraint}, objs...) {
			if err := k8s.Delete(context.Background(), o); err != nil && !apierrors.IsNotFound(err) && !strings.Contains(err.Error(), "no matches for kind") {
				t.Errorf("cleanup: deleting %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	})
	// The constraint's CRD exists once Gatekeeper has ingested the template.
	eventually(t, clusterTimeout, "the constraint "+name+" to be created", func() (bool, string) {
		err := k8s.Create(ctx, constraint.DeepCopy())
		return err == nil || apierrors.IsAlreadyExists(err), fmt.Sprint(err)
	})

	labels := map[string]string{"app": "expansion-e2e", "e2e-deny": "yes"}
	mk := func(attempt int) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("web-%d", attempt)},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
				},
			},
		}
	}
	// The constraint and the expansion template reach the webhook shortly after they are created.
	want := "[Implied by e2e-" + runID + "-deployments] Pod web-"
	attempt := 0
	eventually(t, clusterTimeout, "a Deployment whose pod template is labelled e2e-deny=yes to be denied as its Pod", func() (bool, string) {
		attempt++
		_, err := clientset.AppsV1().Deployments(ns).Create(ctx, mk(attempt), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			return false, "admitted"
		}
		msg := err.Error()
		return strings.Contains(msg, gatekeeperDenial) && strings.Contains(msg, want), msg
	})
}

// controlledBy: refs holds a controller reference to uid.
func controlledBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid && r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

func hasKubeAPIAccessVolume(vols []corev1.Volume) bool {
	for _, v := range vols {
		if strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
