package controllers

import (
	"context"
	"testing"
)

// TestReconciler runs the behaviours against one real API server, in order: there is one
// PodSecurityConstraints per cluster, so they cannot run in parallel. Each behaviour leaves the
// cluster without the CR.
func TestReconciler(t *testing.T) {
	te := startEnv(t, true)
	fg := startFakeGatekeeper(t, te.client)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *testEnv, *fakeGatekeeper)
	}{
		{"ApplyAndPrune", testApplyAndPrune},
		{"OneAppliedEventPerChange", testOneAppliedEventPerChange},
		{"MasterSwitch", testMasterSwitch},
		{"DriftIsRestored", testDriftIsRestored},
		{"ConstraintCRDRemoved", testConstraintCRDRemoved},
		{"StatusFollowsGatekeeper", testStatusFollowsGatekeeper},
		{"TemplateErrorsSurface", testTemplateErrorsSurface},
		{"ConstraintErrorsStayWithTheirFeatures", testConstraintErrorsStayWithTheirFeatures},
		{"FeaturesMoveBetweenConstraints", testFeaturesMoveBetweenConstraints},
		{"ConstraintGenerationIsChecked", testConstraintGenerationIsChecked},
		{"OldLayoutIsPruned", testOldLayoutIsPruned},
		{"UnbindBeforeTemplate", testUnbindBeforeTemplate},
		{"SteadyStateWritesNothing", testSteadyStateWritesNothing},
		{"ConflictsAreSurvived", testConflictsAreSurvived},
		{"UnownedObjectsAreNeverTouched", testUnownedObjectsAreNeverTouched},
		{"DeletionPrunesEverything", testDeletionPrunesEverything},
		{"WorkloadExpansions", testWorkloadExpansions},
		{"DefaultsMutators", testDefaultsMutators},
		{"DefaultsWithheldForExemptImages", testDefaultsWithheldForExemptImages},
		{"OnlyClusterIsAccepted", testOnlyClusterIsAccepted},
		{"SpecIsValidatedByTheAPIServer", testSpecIsValidatedByTheAPIServer},
	} {
		runBehaviour(t, tc.name, te, fg, tc.run)
	}
}

// runBehaviour runs one behaviour as a subtest; when it fails, the fake Gatekeeper's view (the
// constraint CRDs, the templates, its last CRD actions) goes into the log.
func runBehaviour(t *testing.T, name string, te *testEnv, fg *fakeGatekeeper, run func(*testing.T, *testEnv, *fakeGatekeeper)) bool {
	return t.Run(name, func(t *testing.T) {
		defer func() {
			if t.Failed() {
				t.Log(fg.describe(context.Background()))
			}
		}()
		run(t, te, fg)
	})
}
