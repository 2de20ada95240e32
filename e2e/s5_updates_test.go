//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// TestUpdatesOfExistingPods: with every feature of the full sample enforced, updates that
// change nothing security-relevant (labels, annotations, a finalizer added then removed) are
// admitted, for pods that violate every feature (created before the policies) as for a
// compliant one.
func TestUpdatesOfExistingPods(t *testing.T) {
	startScenario(t)
	ns := newNamespace(t, "updates")
	createLegacyPods(t, ns)

	gen := applyManifest(t, fullSamplePath())
	waitReady(t, gen, enforceTimeout)

	// The policies are active: the same pods are denied now, and a compliant one is admitted.
	want := map[string]string{"legacy": "psc/privilegedContainers:", "legacy-host-ns": "psc/hostNamespaces:", "legacy-host-process": "psc/hostProcess:"}
	for _, p := range legacyPods(ns) {
		msg := want[p.Name]
		p.Name += "-again"
		_, err := createPod(p)
		expectDenied(t, "creating "+p.Name+", a copy of a pod that predates the policies", err, msg)
	}
	if _, err := createPod(compliantPod(ns, "compliant")); err != nil {
		t.Fatalf("creating a compliant pod under the full sample: %v", err)
	}

	pods := clientset.CoreV1().Pods(ns)
	ctx := context.Background()
	for _, name := range []string{"legacy", "legacy-host-ns", "compliant"} {
		t.Run(name, func(t *testing.T) {
			// A full update (PUT) of labels and annotations.
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				p, err := pods.Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if p.Labels == nil {
					p.Labels = map[string]string{}
				}
				p.Labels["team"] = "a"
				if p.Annotations == nil {
					p.Annotations = map[string]string{}
				}
				p.Annotations["e2e.podsecurity.dev/note"] = "updated"
				_, err = pods.Update(ctx, p, metav1.UpdateOptions{})
				return err
			})
			expectAdmitted(t, "updating labels and annotations (PUT)", err)

			patches := []struct{ what, patch string }{
				{"changing a label (merge patch)", `{"metadata":{"labels":{"team":"b"}}}`},
				{"adding a finalizer", `{"metadata":{"finalizers":["e2e.podsecurity.dev/hold"]}}`},
				{"removing the finalizer", `{"metadata":{"finalizers":null}}`},
				{"removing the label", `{"metadata":{"labels":{"team":null}}}`},
			}
			for _, p := range patches {
				_, err := pods.Patch(ctx, name, types.MergePatchType, []byte(p.patch), metav1.PatchOptions{})
				expectAdmitted(t, p.what, err)
			}

			got, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Finalizers) != 0 || got.Labels["team"] != "" || got.Annotations["e2e.podsecurity.dev/note"] != "updated" {
				t.Errorf("pod %s after the updates: finalizers %v, labels %v, annotations %v; want no finalizer, no team label, the note annotation",
					name, got.Finalizers, got.Labels, got.Annotations)
			}
		})
	}
	// The pods are still there: nothing was evicted or replaced.
	list, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if wantPods := len(legacyPods(ns)) + 1; len(list.Items) != wantPods {
		t.Errorf("namespace %s has %d pods, want %d (the legacy pods and the compliant one): %v", ns, len(list.Items), wantPods, podNames(list.Items))
	}
}

func podNames(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, fmt.Sprintf("%s/%s", p.Namespace, p.Name))
	}
	return out
}
