//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/templates"
)

// TestDrift: generated objects changed or deleted by hand are restored by the operator.
func TestDrift(t *testing.T) {
	startScenario(t)
	ns := newNamespace(t, "drift")
	gen := setSpec(t, map[string]interface{}{
		"privilegedContainers": map[string]interface{}{"enabled": true},
		"hostNamespaces":       map[string]interface{}{"enabled": true},
	})
	waitReady(t, gen, enforceTimeout)
	// Both features deny: one constraint enforces them, psc-deny.
	denyName := templates.ConstraintName("deny")
	ctx := context.Background()

	t.Run("constraint deleted", func(t *testing.T) {
		c := policyConstraint(denyName)
		if found, err := getObject(ctx, c); err != nil || !found {
			t.Fatalf("constraint %s: found %v, err %v", c.GetName(), found, err)
		}
		oldUID := c.GetUID()
		if err := k8s.Delete(ctx, c); err != nil {
			t.Fatalf("deleting constraint %s: %v", c.GetName(), err)
		}
		d := waitRecreated(t, policyConstraint(denyName), oldUID, 30*time.Second)
		t.Logf("DRIFT constraint %s/%s deleted by hand was restored after %s (bound 30s)", c.GetKind(), c.GetName(), d.Round(10*time.Millisecond))
		waitReady(t, gen, enforceTimeout)
		_, err := createPod(privilegedPod(ns, "after-constraint-restore", "nginx"))
		expectDenied(t, "privileged pod after the constraint was restored", err, privilegedMessage)
	})

	t.Run("constraint edited", func(t *testing.T) {
		c := policyConstraint(denyName)
		patch := []byte(`{"spec":{"enforcementAction":"dryrun","match":{"excludedNamespaces":["` + ns + `"]}}}`)
		if err := k8s.Patch(ctx, c, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatalf("editing constraint %s: %v", c.GetName(), err)
		}
		d := eventually(t, 30*time.Second, "the edited constraint to be reverted", func() (bool, string) {
			u := policyConstraint(denyName)
			if found, err := getObject(ctx, u); err != nil || !found {
				return false, fmt.Sprintf("found %v, err %v", found, err)
			}
			raw, _, _ := unstructured.NestedString(u.Object, "spec", "enforcementAction")
			action := templates.ConstraintAction(u)
			excluded, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "match", "excludedNamespaces")
			return raw == "scoped" && action == "deny" && !contains(excluded, ns), fmt.Sprintf("enforcementAction %q (%s), excludedNamespaces %v", raw, action, excluded)
		})
		t.Logf("DRIFT constraint edited by hand was reverted after %s", d.Round(10*time.Millisecond))
		waitReady(t, gen, enforceTimeout)
		_, err := createPod(privilegedPod(ns, "after-constraint-revert", "nginx"))
		expectDenied(t, "privileged pod after the constraint was reverted", err, privilegedMessage)
	})

	t.Run("template deleted", func(t *testing.T) {
		tmpl := policyTemplate()
		if found, err := getObject(ctx, tmpl); err != nil || !found {
			t.Fatalf("template %s: found %v, err %v", tmpl.GetName(), found, err)
		}
		oldUID := tmpl.GetUID()
		if err := k8s.Delete(ctx, tmpl); err != nil {
			t.Fatalf("deleting template %s: %v", tmpl.GetName(), err)
		}
		d := waitRecreated(t, policyTemplate(), oldUID, 60*time.Second)
		t.Logf("DRIFT ConstraintTemplate %s deleted by hand was restored after %s", tmpl.GetName(), d.Round(10*time.Millisecond))
		d = waitReady(t, gen, enforceTimeout)
		t.Logf("Ready again %s later", d.Round(10*time.Millisecond))
		// And it stays so: Gatekeeper's handling of the deleted template has settled.
		time.Sleep(2 * refreshInterval)
		if cr := mustGetCR(t); !isReady(cr, gen) {
			t.Errorf("not Ready any more after the template was restored: %s", describeCR(cr))
		}
		if features, found, err := constraintFeatures(ctx, denyName); err != nil || !found || features["hostNamespaces"] == nil || features["privilegedContainers"] == nil {
			t.Errorf("constraint %s after its template was restored: found %v, err %v, parameters.features %v; want both features", denyName, found, err, sortedKeys(features))
		}
		_, err := createPod(hostPIDPod(ns, "after-template-restore"))
		expectDenied(t, "hostPID pod after the template was restored", err, hostPIDMessage)
	})
}

// waitRecreated waits until obj exists again with a UID other than oldUID.
func waitRecreated(t testing.TB, obj *unstructured.Unstructured, oldUID types.UID, timeout time.Duration) time.Duration {
	t.Helper()
	return eventually(t, timeout, fmt.Sprintf("%s %s to be recreated", obj.GetKind(), obj.GetName()), func() (bool, string) {
		u := obj.DeepCopy()
		found, err := getObject(context.Background(), u)
		if err != nil || !found {
			return false, fmt.Sprintf("found %v, err %v", found, err)
		}
		return u.GetUID() != oldUID && u.GetDeletionTimestamp() == nil, fmt.Sprintf("uid %s (old %s), deletionTimestamp %v", u.GetUID(), oldUID, u.GetDeletionTimestamp())
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestDriftRightAfterConstraintCRDCreated: a constraint deleted right after Gatekeeper created
// its CRD is restored by the watch, not only by the periodic refresh. This was a bug: the
// operator started the watch of a new constraint kind as soon as the CRD's name appeared,
// before the CRD was established; controller-runtime's Kind source then failed discovery
// ("no matches for kind") and retried only ~10 s later, and deletions in that window waited
// for RefreshInterval. The operator now starts a watch only once the CRD is established.
// On a real cluster the constraint CRD is created again each time a feature is re-enabled
// (the garbage collector deletes it with its template); here the test deletes it by hand to get
// the same effect, and restarts the operator so that its REST mapper has never seen the kind.
func TestDriftRightAfterConstraintCRDCreated(t *testing.T) {
	startScenario(t)
	ctx := context.Background()
	crdName := strings.ToLower(templates.PolicyKind) + ".constraints.gatekeeper.sh"

	// Enabled, then disabled; its constraint CRD is deleted as the garbage collector would.
	gen := setSpec(t, map[string]interface{}{"privilegedContainers": map[string]interface{}{"enabled": true}})
	waitReady(t, gen, enforceTimeout)
	gen = setSpec(t, map[string]interface{}{"privilegedContainers": map[string]interface{}{"enabled": false}})
	waitReady(t, gen, enforceTimeout)
	crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: crdName}}
	if err := k8s.Delete(ctx, crd); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("deleting CRD %s: %v", crdName, err)
	}
	eventually(t, 60*time.Second, "CRD "+crdName+" to be deleted", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(crd), &apiextensionsv1.CustomResourceDefinition{})
		return apierrors.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})

	// A new operator process, which has never seen the kind, with a periodic refresh that cannot
	// hide the bug within the 30 s bound.
	if err := op.stop(); err != nil {
		t.Fatal(err)
	}
	var err error
	if op, err = startOperatorWith(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := op.stop(); err != nil {
			t.Errorf("stopping the operator: %v", err)
		}
		if op, err = startOperator(); err != nil {
			t.Errorf("starting the operator again: %v", err)
		}
	})

	// Enabled again: Gatekeeper creates the CRD anew, the operator applies the constraint.
	gen = setSpec(t, map[string]interface{}{"privilegedContainers": map[string]interface{}{"enabled": true}})
	waitReady(t, gen, enforceTimeout)
	c := policyConstraint(templates.ConstraintName("deny"))
	if found, err := getObject(ctx, c); err != nil || !found {
		t.Fatalf("constraint %s: found %v, err %v", c.GetName(), found, err)
	}
	if err := k8s.Delete(ctx, c); err != nil {
		t.Fatalf("deleting constraint %s: %v", c.GetName(), err)
	}
	d := waitRecreated(t, policyConstraint(c.GetName()), c.GetUID(), 30*time.Second)
	t.Logf("constraint deleted right after its CRD was created was restored after %s", d.Round(10*time.Millisecond))
}
