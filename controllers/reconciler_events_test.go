package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// testOneAppliedEventPerChange: the policy template and its constraints are applied over
// several reconciles (the constraints wait for their CRD); the change still gets one event,
// which names the features whose constraint entry changed.
func testOneAppliedEventPerChange(t *testing.T, te *testEnv, _ *fakeGatekeeper) {
	defer deleteCR(t, te.client)
	applyCR(t, te.client, specWith("privilegedContainers", "hostNamespaces", "capabilities"))
	obj := waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitAppliedEvents(t, te.client, obj.UID, []string{"Applied the objects of: policy template, privilegedContainers, hostNamespaces, capabilities, expansion"})

	applyCR(t, te.client, specWith("privilegedContainers", "hostNamespaces", "capabilities", "privilegeEscalation", "sysctls"))
	waitReady(t, te.client, metav1.ConditionTrue, ReasonEnforced)
	waitAppliedEvents(t, te.client, obj.UID, []string{
		"Applied the objects of: policy template, privilegedContainers, hostNamespaces, capabilities, expansion",
		"Applied the objects of: privilegeEscalation, sysctls",
	})
}

// waitAppliedEvents waits for exactly the Applied events wanted (by note, in any order) about
// the object, and checks that no further one follows.
func waitAppliedEvents(t *testing.T, c client.Client, uid types.UID, want []string) {
	t.Helper()
	check := func() error {
		got, err := appliedEventNotes(c, uid)
		if err != nil {
			return err
		}
		if strings.Join(got, "\n") != strings.Join(sortedCopy(want), "\n") {
			return fmt.Errorf("Applied events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(sortedCopy(want), "\n"))
		}
		return nil
	}
	eventually(t, waitTimeout, check)
	// Events are sent asynchronously: give a late duplicate the time to show up.
	consistently(t, 2*time.Second, check)
}

func appliedEventNotes(c client.Client, uid types.UID) ([]string, error) {
	list := &eventsv1.EventList{}
	if err := c.List(context.Background(), list); err != nil {
		return nil, err
	}
	var notes []string
	for _, e := range list.Items {
		if e.Regarding.UID != uid || e.Reason != ReasonApplied || e.Type != corev1.EventTypeNormal {
			continue
		}
		n := 1
		if e.Series != nil {
			n = int(e.Series.Count)
		}
		for range n {
			notes = append(notes, e.Note)
		}
	}
	return sortedCopy(notes), nil
}

func sortedCopy(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}
