package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podsecurity/psc-operator/templates"
)

// fakeGatekeeper plays Gatekeeper's part in envtest: for each ConstraintTemplate it creates
// the constraint CRD and reports the template created (or the errors it was told to
// report), marks constraints enforced, reports the audit results it was told to, and removes
// the CRDs of deleted templates.
type fakeGatekeeper struct {
	c client.Client

	mu             sync.Mutex
	templateErrors map[string]string // template name -> error message
	// constraintErrors are reported by the pod for a constraint (constraint name -> message).
	constraintErrors map[string]string
	// violations are the audit violations per feature (feature name -> count): each constraint
	// reports those of the features in its parameters.features, with messages
	// "psc/<feature>: ...", and lists at most violationsLimit of them, as Gatekeeper's
	// --constraint-violations-limit (20 by default).
	violations      map[string]int64
	violationsLimit int
	// frozen: the pod stops reporting on constraints (a busy or stuck Gatekeeper), so a
	// constraint's byPod keeps the generation it last reported.
	frozen bool
	// noExpansion plays Gatekeeper run with --enable-generator-resource-expansion=false: its
	// pods never load (and never report) ExpansionTemplates.
	noExpansion bool
	// orphans are the constraint kinds whose CRD had no template at the last step. A CRD is
	// removed only when its template has been missing for two steps and is still missing
	// when checked again right before the removal (see removeOrphanCRDs).
	orphans map[string]bool
	// actions are the fake's last CRD creations and removals, for describe.
	actions []string
	// phase is what the step loop did last, with its time, for describe.
	phase string
}

func (fg *fakeGatekeeper) setPhase(p string) {
	fg.mu.Lock()
	defer fg.mu.Unlock()
	fg.phase = time.Now().UTC().Format("15:04:05.000") + " " + p
}

// record notes a CRD creation or removal (the last 20 are kept).
func (fg *fakeGatekeeper) record(format string, args ...interface{}) {
	fg.mu.Lock()
	defer fg.mu.Unlock()
	fg.actions = append(fg.actions, time.Now().UTC().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	if len(fg.actions) > 20 {
		fg.actions = fg.actions[len(fg.actions)-20:]
	}
}

// describe is what a failed test logs: the constraint CRDs as the API server has them now and
// the fake's last CRD actions.
func (fg *fakeGatekeeper) describe(ctx context.Context) string {
	var b strings.Builder
	b.WriteString("fake Gatekeeper, at " + time.Now().UTC().Format("15:04:05.000") + ":\n")
	b.WriteString(describeGatekeeperObjects(ctx, fg.c))
	fg.mu.Lock()
	defer fg.mu.Unlock()
	b.WriteString("  last: " + fg.phase + "\n")
	for _, a := range fg.actions {
		b.WriteString("  " + a + "\n")
	}
	return b.String()
}

// describeGatekeeperObjects lists the constraint CRDs, the templates and our constraints as the
// API server has them, one line each.
func describeGatekeeperObjects(ctx context.Context, c client.Client) string {
	var b strings.Builder
	crds := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := c.List(ctx, crds); err != nil {
		fmt.Fprintf(&b, "  listing CRDs: %v\n", err)
	}
	for _, crd := range crds.Items {
		if crd.Spec.Group != constraintsGroup {
			continue
		}
		fmt.Fprintf(&b, "  CRD %s uid %s created %s deleting %v finalizers %v established %t\n", crd.Name, crd.UID,
			crd.CreationTimestamp.UTC().Format("15:04:05"), crd.DeletionTimestamp, crd.Finalizers, established(&crd))
	}
	tmpls := &unstructured.UnstructuredList{}
	tmpls.SetGroupVersionKind(templates.TemplateGVK.GroupVersion().WithKind("ConstraintTemplateList"))
	if err := c.List(ctx, tmpls); err != nil {
		fmt.Fprintf(&b, "  listing templates: %v\n", err)
	}
	for _, t := range tmpls.Items {
		fmt.Fprintf(&b, "  template %s uid %s deleting %v finalizers %v status %v\n", t.GetName(), t.GetUID(), t.GetDeletionTimestamp(), t.GetFinalizers(), t.Object["status"])
	}
	cons := &unstructured.UnstructuredList{}
	cons.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind + "List"))
	if err := c.List(ctx, cons); err == nil {
		for _, con := range cons.Items {
			fmt.Fprintf(&b, "  constraint %s/%s uid %s created %s deleting %v\n", con.GetKind(), con.GetName(), con.GetUID(),
				con.GetCreationTimestamp().UTC().Format("15:04:05"), con.GetDeletionTimestamp())
		}
	}
	return b.String()
}

func (fg *fakeGatekeeper) setExpansion(enabled bool) {
	fg.mu.Lock()
	defer fg.mu.Unlock()
	fg.noExpansion = !enabled
}

const fakeAuditTimestamp = "2026-11-22T10:00:00Z"

func startFakeGatekeeper(t *testing.T, c client.Client) *fakeGatekeeper {
	t.Helper()
	fg := &fakeGatekeeper{c: c, templateErrors: map[string]string{}, constraintErrors: map[string]string{}, violations: map[string]int64{}, violationsLimit: 20, orphans: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				// A step that hangs on an API call would stop the fake without a trace: each
				// gets a deadline, and describe tells when the last one started and ended.
				stepCtx, cancelStep := context.WithTimeout(ctx, 10*time.Second)
				fg.setPhase("step started")
				err := fg.step(stepCtx)
				cancelStep()
				fg.setPhase(fmt.Sprintf("step ended (%v)", err))
				if err != nil && ctx.Err() == nil {
					t.Logf("fake gatekeeper: %v", err)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return fg
}

func (fg *fakeGatekeeper) setTemplateError(name, msg string) {
	fg.setMessage(fg.templateErrors, name, msg)
}

// setMessage sets or (with "") clears an entry of one of the fake's error maps.
func (fg *fakeGatekeeper) setMessage(m map[string]string, name, msg string) {
	fg.mu.Lock()
	defer fg.mu.Unlock()
	if msg == "" {
		delete(m, name)
	} else {
		m[name] = msg
	}
}

// setViolations sets a feature's audit violations, in whichever constraint enforces it.
func (fg *fakeGatekeeper) setViolations(feature string, n int64) {
	fg.mu.Lock()
	defer fg.mu.Unlock()
	fg.violations[feature] = n
}

func (fg *fakeGatekeeper) setConstraintError(name, msg string) {
	fg.setMessage(fg.constraintErrors, name, msg)
}

func (fg *fakeGatekeeper) setFrozen(frozen bool) {
	fg.mu.Lock()
	defer fg.mu.Unlock()
	fg.frozen = frozen
}

func (fg *fakeGatekeeper) step(ctx context.Context) error {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(templates.TemplateGVK.GroupVersion().WithKind("ConstraintTemplateList"))
	if err := fg.c.List(ctx, list); err != nil {
		return err
	}
	kinds := map[string]bool{}
	for i := range list.Items {
		tmpl := &list.Items[i]
		kind := templateKind(tmpl)
		fg.mu.Lock()
		errMsg := fg.templateErrors[tmpl.GetName()]
		fg.mu.Unlock()
		pod := map[string]interface{}{"id": "gatekeeper-fake", "observedGeneration": tmpl.GetGeneration(), "operations": []interface{}{"webhook", "audit"}}
		created := false
		if errMsg != "" {
			pod["errors"] = []interface{}{map[string]interface{}{"code": "ingest_error", "message": errMsg}}
		} else if kind != "" && tmpl.GetDeletionTimestamp().IsZero() {
			kinds[kind] = true
			ready, err := fg.ensureConstraintCRD(ctx, kind)
			if err != nil {
				return err
			}
			created = ready
		}
		status := map[string]interface{}{"created": created, "byPod": []interface{}{pod}}
		if !equality.Semantic.DeepEqual(tmpl.Object["status"], status) {
			tmpl.Object["status"] = status
			if err := fg.c.Status().Update(ctx, tmpl); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				return err
			}
		}
		if created {
			if err := fg.reportConstraints(ctx, kind); err != nil {
				return err
			}
		}
	}
	if err := fg.reportExpansions(ctx); err != nil {
		return err
	}
	if err := fg.reportMutators(ctx); err != nil {
		return err
	}
	return fg.removeOrphanCRDs(ctx, kinds)
}

// reportExpansions marks every ExpansionTemplate loaded, as Gatekeeper's pods do when generator
// resource expansion is on. Without the CRD there is nothing to report.
func (fg *fakeGatekeeper) reportExpansions(ctx context.Context) error {
	fg.mu.Lock()
	off := fg.noExpansion
	fg.mu.Unlock()
	if off {
		return nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(templates.ExpansionGVK.GroupVersion().WithKind("ExpansionTemplateList"))
	if err := fg.c.List(ctx, list); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	for i := range list.Items {
		et := &list.Items[i]
		status := map[string]interface{}{"byPod": []interface{}{map[string]interface{}{
			"id": "gatekeeper-fake", "observedGeneration": et.GetGeneration(), "templateUID": string(et.GetUID()),
			"operations": []interface{}{"webhook", "audit"},
		}}}
		if equality.Semantic.DeepEqual(et.Object["status"], status) {
			continue
		}
		et.Object["status"] = status
		if err := fg.c.Status().Update(ctx, et); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func (fg *fakeGatekeeper) ensureConstraintCRD(ctx context.Context, kind string) (bool, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	name := constraintCRDName(kind)
	err := fg.c.Get(ctx, client.ObjectKey{Name: name}, crd)
	if apierrors.IsNotFound(err) {
		preserve := true
		crd = &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: constraintsGroup,
				Names: apiextensionsv1.CustomResourceDefinitionNames{
					Kind: kind, ListKind: kind + "List", Plural: strings.ToLower(kind), Singular: strings.ToLower(kind),
					Categories: []string{"constraint", "constraints"},
				},
				Scope: apiextensionsv1.ClusterScoped,
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
					Name: "v1beta1", Served: true, Storage: true,
					Schema:       &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}},
					Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				}},
			},
		}
		err := fg.c.Create(ctx, crd)
		fg.record("create CRD %s: %v", name, err)
		return false, client.IgnoreAlreadyExists(err)
	}
	if err != nil {
		return false, err
	}
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true, nil
		}
	}
	return false, nil
}

func (fg *fakeGatekeeper) reportConstraints(ctx context.Context, kind string) error {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(kind + "List"))
	if err := fg.c.List(ctx, list); err != nil {
		// No such kind yet, or its CRD just went away (the API server answers 404 for the
		// resource): nothing to report.
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	fg.mu.Lock()
	defer fg.mu.Unlock()
	if fg.frozen {
		return nil
	}
	for i := range list.Items {
		con := &list.Items[i]
		pod := map[string]interface{}{
			"id": "gatekeeper-fake", "enforced": true, "observedGeneration": con.GetGeneration(),
			"operations": []interface{}{"webhook", "audit"},
		}
		if msg := fg.constraintErrors[con.GetName()]; msg != "" {
			pod["enforced"] = false
			pod["errors"] = []interface{}{map[string]interface{}{"code": "create_error", "message": msg}}
		}
		features, _, _ := unstructured.NestedMap(con.Object, "spec", "parameters", "features")
		var total int64
		var samples []interface{}
		for _, f := range templates.Features() {
			if _, ok := features[f.Name]; !ok {
				continue
			}
			n := fg.violations[f.Name]
			total += n
			for j := int64(0); j < n && len(samples) < fg.violationsLimit; j++ {
				samples = append(samples, map[string]interface{}{
					"enforcementAction": "scoped", "enforcementActions": []interface{}{"deny"},
					"group": "", "version": "v1", "kind": "Pod", "namespace": "default",
					"name": fmt.Sprintf("pod-%s-%d", strings.ToLower(f.Name), j), "message": "psc/" + f.Name + ": violation",
				})
			}
		}
		status := map[string]interface{}{
			"byPod":           []interface{}{pod},
			"auditTimestamp":  fakeAuditTimestamp,
			"totalViolations": total,
		}
		if samples != nil {
			status["violations"] = samples
		}
		if equality.Semantic.DeepEqual(con.Object["status"], status) {
			continue
		}
		con.Object["status"] = status
		if err := fg.c.Status().Update(ctx, con); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// removeOrphanCRDs removes the constraint CRDs whose template is gone, as Gatekeeper does
// when a template is deleted. Gatekeeper reacts to the deletion itself; this fake polls, and a
// poll can race with the operator: templates listed (none, the CR was just deleted), the
// operator re-creates the template and its constraint, then the CRD is removed on the stale
// list and takes the new constraint with it (a second "Applied" event, or a constraint that
// the operator's cache still holds and Gatekeeper never reports). Real Gatekeeper does not
// remove the CRD of a template that exists, so the fake keeps that window as small as it can:
// a CRD is removed only when its template was missing at two steps in a row (100 ms apart)
// and is still missing on a fresh list right before the removal.
func (fg *fakeGatekeeper) removeOrphanCRDs(ctx context.Context, kinds map[string]bool) error {
	crds := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := fg.c.List(ctx, crds); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := range crds.Items {
		crd := &crds.Items[i]
		kind := crd.Spec.Names.Kind
		if crd.Spec.Group != constraintsGroup || kinds[kind] || !crd.DeletionTimestamp.IsZero() {
			continue
		}
		seen[kind] = true
		if !fg.orphans[kind] {
			continue
		}
		exists, err := fg.templateOfKindExists(ctx, kind)
		if err != nil {
			return err
		}
		if exists {
			continue
		}
		err = fg.c.Delete(ctx, crd)
		fg.record("delete CRD %s (uid %s): %v", crd.Name, crd.UID, err)
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	fg.orphans = seen
	return nil
}

// templateKind is the constraint kind a template declares.
func templateKind(tmpl *unstructured.Unstructured) string {
	kind, _, _ := unstructured.NestedString(tmpl.Object, "spec", "crd", "spec", "names", "kind")
	return kind
}

// templateOfKindExists lists the templates again: is there one for this constraint kind now?
func (fg *fakeGatekeeper) templateOfKindExists(ctx context.Context, kind string) (bool, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(templates.TemplateGVK.GroupVersion().WithKind("ConstraintTemplateList"))
	if err := fg.c.List(ctx, list); err != nil {
		return false, err
	}
	for i := range list.Items {
		if templateKind(&list.Items[i]) == kind {
			return true, nil
		}
	}
	return false, nil
}

// reportMutators marks every Assign and ModifySet loaded, as Gatekeeper's pods running
// --operation=mutation-status do. Without the CRDs there is nothing to report.
func (fg *fakeGatekeeper) reportMutators(ctx context.Context) error {
	for _, gvk := range []schema.GroupVersionKind{templates.AssignGVK, templates.ModifySetGVK} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := fg.c.List(ctx, list); err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		for i := range list.Items {
			m := &list.Items[i]
			status := map[string]interface{}{"byPod": []interface{}{map[string]interface{}{
				"id": "gatekeeper-fake", "observedGeneration": m.GetGeneration(), "mutatorUID": string(m.GetUID()),
				"operations": []interface{}{"mutation-webhook", "mutation-status"}, "enforced": true,
			}}}
			if equality.Semantic.DeepEqual(m.Object["status"], status) {
				continue
			}
			m.Object["status"] = status
			if err := fg.c.Status().Update(ctx, m); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}
