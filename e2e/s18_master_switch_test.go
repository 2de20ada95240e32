//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestMasterSwitchQuickly: the master switch turned off and on again within a second brings
// enforcement back within seconds. Switched off, the operator deletes the template and the
// constraint, and Gatekeeper starts removing the constraint CRD of the deleted template; switched
// on, the operator applies both again, possibly while that CRD is going. A constraint created
// after the API server had deleted the CRD's objects kept the CRD terminating for a minute
// (the API server checks every 5 s for a minute that none is left), so Gatekeeper could not
// create it anew and nothing was enforced; the operator now deletes the constraints of a
// terminating CRD (TestPrune; reproduced only with the envtests' simulated Gatekeeper under load:
// 19 rounds against real Gatekeeper before the fix all recovered in 1.1–3.2 s). The pauses
// between off and on vary, to meet Gatekeeper at different steps.
func TestMasterSwitchQuickly(t *testing.T) {
	startScenario(t)
	ns := newNamespace(t, "master-switch")
	features := map[string]interface{}{"privilegedContainers": map[string]interface{}{"enabled": true}}
	with := func(enabled bool) map[string]interface{} {
		spec := deepCopyMap(features)
		spec["enabled"] = enabled
		return spec
	}
	waitReady(t, setSpec(t, with(true)), enforceTimeout)

	// Well inside the minute a stuck CRD took, with room for a loaded machine.
	const bound = 30 * time.Second
	for i, pause := range []time.Duration{0, 200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second} {
		setSpec(t, with(false))
		time.Sleep(pause)
		gen := setSpec(t, with(true))
		d := waitReady(t, gen, bound)
		_, err := createPod(privilegedPod(ns, fmt.Sprintf("after-switch-%d", i), "nginx"))
		expectDenied(t, fmt.Sprintf("privileged pod after the master switch went off and on (pause %s)", pause), err, privilegedMessage)
		t.Logf("MASTER SWITCH off, %s pause, on: Ready with every feature enforced after %s (bound %s)", pause, d.Round(10*time.Millisecond), bound)
	}
}
