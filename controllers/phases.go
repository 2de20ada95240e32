package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/profiles"
	"github.com/podsecurity/psc-operator/templates"
)

const (
	templateCRDName  = "constrainttemplates.templates.gatekeeper.sh"
	constraintsGroup = "constraints.gatekeeper.sh"
)

// changes lists what a reconcile changed in the cluster, for events and logs.
type changes struct {
	Applied []string // the policy template, feature names whose constraint entry or mutators changed, and roles of other objects applied
	Pruned  []string // Kind/name of deleted objects
}

// reconcile is the pipeline: validate, render, check Gatekeeper, apply the policy template,
// wait for its constraint CRD, apply the constraints, prune, and read Gatekeeper's status. Each step records what it
// found in the facts; the status is derived from them afterwards.
func (r *Reconciler) reconcile(ctx context.Context, obj *v1alpha1.PodSecurityConstraints) (reconcileFacts, changes, ctrl.Result) {
	var ch changes
	facts := reconcileFacts{Generation: obj.Generation, MasterEnabled: obj.Spec.MasterEnabled()}
	for _, f := range templates.Features() {
		facts.Features = append(facts.Features, featureFacts{Feature: f})
	}
	steady := ctrl.Result{RequeueAfter: r.RefreshInterval}

	// Validate: the API server already did, unless the object predates the CRD's rules.
	invalid, err := r.validateSpec(ctx, obj)
	if err != nil {
		facts.Failed, facts.Unchecked = &failure{Reason: ReasonSpecCheckFailed, Message: err.Error()}, true
		return facts, ch, ctrl.Result{RequeueAfter: transientRequeue}
	}
	if invalid != "" {
		facts.Stalled = &failure{Reason: ReasonInvalidSpec, Message: "The spec is invalid and was not applied: " + invalid}
		return facts, ch, ctrl.Result{}
	}
	stepDone(ctx, "validate")

	facts.Profile, facts.ProfileVersion = profiles.Resolved(&obj.Spec)
	rendered, err := templates.Render(&obj.Spec, r.Options)
	if err != nil {
		facts.Stalled = &failure{Reason: ReasonRenderFailed, Message: err.Error()}
		return facts, ch, ctrl.Result{}
	}
	facts.VAPEnabled = obj.Spec.ValidatingAdmissionPolicyEnabled()
	withheld, err := templates.WithheldDefaults(&obj.Spec)
	if err != nil {
		facts.Stalled = &failure{Reason: ReasonRenderFailed, Message: err.Error()}
		return facts, ch, ctrl.Result{}
	}
	for i := range facts.Features {
		f := &facts.Features[i]
		if con, ok := rendered.Find(templates.RoleConstraint, f.Feature.Name); ok {
			f.Enabled = true
			f.ConstraintName = con.GetName()
			for _, it := range rendered.Items(templates.RoleConstraint) {
				if it.Object == con {
					f.ConstraintFeatures = it.Features
				}
			}
			action := templates.ConstraintAction(con)
			f.EnforcementAction = v1alpha1.EnforcementAction(action)
			f.VAP = vapFacts{Wanted: facts.VAPEnabled, Binds: facts.VAPEnabled && templates.VAPBinds(action)}
			f.Defaults.Withheld = withheld[f.Feature.Name]
		}
	}
	facts.Workloads = workloadsFacts{Enabled: obj.Spec.WorkloadsEnabled(), Kinds: len(templates.WorkloadKinds(&obj.Spec))}
	stepDone(ctx, "render")

	crds, err := r.gatekeeperCRDs(ctx)
	if err != nil {
		facts.Failed = &failure{Reason: ReasonStatusReadFailed, Message: err.Error()}
		return facts, ch, ctrl.Result{RequeueAfter: transientRequeue}
	}
	if !crds[templateCRDName] {
		facts.Failed = &failure{Reason: ReasonGatekeeperNotInstalled, Message: "Gatekeeper is not installed: the CRD " + templateCRDName +
			" does not exist. Install OPA Gatekeeper (v3.x); the operator applies the policies as soon as it appears."}
		r.watches.sync(ctx, nil, nil)
		return facts, ch, ctrl.Result{RequeueAfter: gatekeeperAbsentRequeue}
	}
	newWatch := r.watches.sync(ctx, watchedKinds(crds), func(gvk schema.GroupVersionKind) bool { return r.servedKind(ctx, gvk) })
	stepDone(ctx, "watches")

	applied, waiting := r.applyPolicy(ctx, obj, rendered, crds, facts.Features)
	ch.Applied = append(ch.Applied, applied...)
	pending := newWatch || waiting
	stepDone(ctx, "features")

	if facts.VAPEnabled {
		r.observeVAP(ctx, facts.Features)
	}
	r.applyMutators(ctx, obj, rendered, crds, facts.Features, &ch)
	facts.Objects = r.applyShared(ctx, obj, rendered, crds, &ch)
	stepDone(ctx, "shared")

	// Make before break: the templates of an older layout (one per feature) keep enforcing until
	// every enabled feature is enforced by the policy template that replaces them.
	holdOldTemplates := false
	for _, f := range facts.Features {
		if f.Enabled {
			if state, _ := featureState(f); state != v1alpha1.FeatureEnforced {
				holdOldTemplates = true
			}
		}
	}
	pruned, err := r.pruneStale(ctx, rendered, holdOldTemplates)
	ch.Pruned = pruned
	stepDone(ctx, "prune")
	if err != nil {
		facts.Failed = &failure{Reason: ReasonPruneFailed, Message: "Pruning stale objects failed: " + err.Error()}
		return facts, ch, ctrl.Result{RequeueAfter: transientRequeue}
	}

	for _, f := range facts.Features {
		if f.Enabled && f.ApplyError == "" && len(f.Template.Errors) == 0 && featureNotEnforcedYet(f) {
			pending = true
		}
	}
	if pending {
		return facts, ch, ctrl.Result{RequeueAfter: transientRequeue}
	}
	return facts, ch, steady
}

// applyParallelism bounds the objects applied at once. The constraints of the policy template
// (one per enforcement action, and one per feature with namespaces of its own) go out together
// once Gatekeeper has created their CRD; a few at a time keep the API server and Gatekeeper busy
// without flooding them.
const applyParallelism = 4

// policyTemplateLabel names the policy template in the Applied event, and offSuffix marks a
// feature a constraint no longer enforces because it was switched off.
const (
	policyTemplateLabel = "policy template"
	offSuffix           = " (off)"
)

// constraintApply is what applying one constraint did.
type constraintApply struct {
	// prev is the constraint before the operator applied it (nil: it did not exist), set when
	// an apply changed it.
	prev    *unstructured.Unstructured
	changed bool
}

// applyPolicy applies the policy template (one for every enabled feature) and then, once
// Gatekeeper has created the constraint CRD of its kind, each of its constraints, several at a
// time. It records what it found in each enabled feature's facts: the template's observation
// is shared, the constraint's is that of the constraint enforcing the feature. It returns what
// changed, for the Applied event (the policy template, then the features whose constraint
// entry changed, in API order), and whether any feature waits for Gatekeeper.
func (r *Reconciler) applyPolicy(ctx context.Context, owner *v1alpha1.PodSecurityConstraints, rendered templates.Inventory,
	crds map[string]bool, features []featureFacts) ([]string, bool) {
	tmpls := rendered.Items(templates.RoleTemplate)
	if len(tmpls) == 0 {
		return nil, false
	}
	tmpl := tmpls[0].Object
	cons := rendered.Items(templates.RoleConstraint)
	enabled := func(fn func(f *featureFacts)) {
		for i := range features {
			if features[i].Enabled {
				fn(&features[i])
			}
		}
	}
	results := make([]constraintApply, len(cons))

	// A constraint that must lose the API server's enforcement point goes first.
	forEachConcurrently(ctx, len(cons), applyParallelism, func(i int) {
		prev, unbound, err := r.unbindBeforeTemplate(ctx, owner, cons[i].Object, crds)
		if err != nil {
			logf.FromContext(ctx).Error(err, "Failed to remove the API server's binding before the template's policy; applying in the usual order", "constraint", cons[i].Object.GetName())
		}
		if unbound {
			results[i] = constraintApply{prev: prev, changed: true}
		}
	})
	applied := func(tmplChanged bool) []string {
		return appliedLabels(tmplChanged, cons, results, features)
	}

	live, tmplChanged, err := r.applyObject(ctx, owner, tmpl)
	if err != nil {
		if isTransient(err) {
			enabled(func(f *featureFacts) { f.Waiting = "Waiting to apply the policy template: " + err.Error() })
			return applied(false), true
		}
		enabled(func(f *featureFacts) { f.ApplyError = "Applying the policy template failed: " + err.Error() })
		return applied(false), false
	}
	obs := observeTemplate(live)
	crdReady := crds[constraintCRDName(templates.PolicyKind)]
	enabled(func(f *featureFacts) { f.Template, f.ConstraintCRDReady = obs, crdReady })
	// Gatekeeper creates the constraint CRD once it has accepted the template, before it
	// reports the template created: the constraints go out as soon as the CRD exists (a kind
	// not served yet, or a template not loaded yet, is a transient error and waits).
	if len(obs.Errors) > 0 || !crdReady {
		return applied(tmplChanged), len(obs.Errors) == 0
	}

	waiting := make([]bool, len(cons))
	forEachConcurrently(ctx, len(cons), applyParallelism, func(i int) {
		con := cons[i]
		set := func(fn func(f *featureFacts)) {
			for j := range features {
				if slices.Contains(con.Features, features[j].Feature.Name) {
					fn(&features[j])
				}
			}
		}
		prev, live, changed, err := r.applyObjectFrom(ctx, owner, con.Object)
		if err != nil {
			if isTransient(err) {
				// Gatekeeper is still loading the template: wait, it is not an error.
				set(func(f *featureFacts) {
					f.Waiting = "Waiting to apply the constraint " + con.Object.GetName() + ": " + err.Error()
				})
				logf.FromContext(ctx).V(1).Info("Waiting for Gatekeeper to accept the constraint", "constraint", con.Object.GetName(), "reason", err.Error())
				waiting[i] = true
				return
			}
			set(func(f *featureFacts) {
				f.ApplyError = "Applying the constraint " + con.Object.GetName() + " failed: " + err.Error()
			})
			return
		}
		obs := observeConstraint(live)
		set(func(f *featureFacts) { f.Constraint = obs })
		if changed && !results[i].changed {
			results[i] = constraintApply{prev: prev, changed: true}
		}
	})
	return applied(tmplChanged), slices.Contains(waiting, true)
}

// appliedLabels names what an applyPolicy changed: the policy template, then in API order each
// feature whose entry in a changed constraint is new or different (every feature of a
// constraint whose other fields changed), then each feature a changed constraint no longer
// enforces and no other constraint does either (switched off).
func appliedLabels(tmplChanged bool, cons []templates.Item, results []constraintApply, features []featureFacts) []string {
	changed := map[string]bool{}
	off := map[string]bool{}
	enabled := map[string]bool{}
	for _, f := range features {
		enabled[f.Feature.Name] = f.Enabled
	}
	for i, con := range cons {
		if !results[i].changed {
			continue
		}
		for _, name := range changedFeatures(con, results[i].prev) {
			changed[name] = true
		}
		if prev := results[i].prev; prev != nil {
			was, _, _ := unstructured.NestedMap(prev.Object, "spec", "parameters", "features")
			for name := range was {
				if !enabled[name] {
					off[name] = true
				}
			}
		}
	}
	var out []string
	if tmplChanged {
		out = append(out, policyTemplateLabel)
	}
	for _, f := range templates.Features() {
		if changed[f.Name] {
			out = append(out, f.Name)
		}
	}
	for _, f := range templates.Features() {
		if off[f.Name] {
			out = append(out, f.Name+offSuffix)
		}
	}
	return out
}

// changedFeatures lists the features of a constraint the operator changed whose entry in
// parameters.features is new or differs from the one before (prev; nil when the constraint is
// new). When the rest of the constraint changed too (its action, match or exemptImages), or no
// entry was added, changed or removed (a repaired label or owner), each of its features.
func changedFeatures(con templates.Item, prev *unstructured.Unstructured) []string {
	if prev == nil {
		return con.Features
	}
	desiredEntries, _, _ := unstructured.NestedMap(con.Object.Object, "spec", "parameters", "features")
	prevEntries, _, _ := unstructured.NestedMap(prev.Object, "spec", "parameters", "features")
	var out []string
	for _, name := range con.Features {
		if !sameValue(desiredEntries[name], prevEntries[name]) {
			out = append(out, name)
		}
	}
	removed := false
	for name := range prevEntries {
		if _, ok := desiredEntries[name]; !ok {
			removed = true
		}
	}
	rest := func(u *unstructured.Unstructured) *unstructured.Unstructured {
		c := u.DeepCopy()
		unstructured.RemoveNestedField(c.Object, "spec", "parameters", "features")
		return c
	}
	desiredRest, prevRest := rest(con.Object), rest(prev)
	if (len(out) == 0 && !removed) || !upToDate(desiredRest, prevRest) {
		return con.Features
	}
	return out
}

// forEachConcurrently calls fn(0) … fn(n-1), at most limit at a time, and returns when all
// calls have returned. Calls not started when ctx ends are skipped.
func forEachConcurrently(ctx context.Context, n, limit int, fn func(i int)) {
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

func featureNotEnforcedYet(f featureFacts) bool {
	return featureStatus(f, true).State == v1alpha1.FeaturePending
}

// unbindBeforeTemplate applies a constraint before the policy template when the live
// constraint still names the API server's enforcement point and the desired one does not
// (spec.validatingAdmissionPolicy switched off, or the constraint's features switched to warn).
// Gatekeeper then deletes the binding first; the template's generateVAP: false, applied next,
// deletes the policy. In the usual order, Gatekeeper would briefly find a constraint asking for
// a binding to a template that no longer generates a policy, and report an error on it. It
// returns the constraint as it was before, and whether it applied it.
func (r *Reconciler) unbindBeforeTemplate(ctx context.Context, owner *v1alpha1.PodSecurityConstraints, con *unstructured.Unstructured, crds map[string]bool) (*unstructured.Unstructured, bool, error) {
	if con == nil || templates.BindsVAP(con) || !crds[constraintCRDName(con.GetKind())] {
		return nil, false, nil
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(con.GroupVersionKind())
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(con), live); err != nil {
		return nil, false, client.IgnoreNotFound(err)
	}
	if !templates.BindsVAP(live) {
		return nil, false, nil
	}
	_, applied, err := r.applyObject(ctx, owner, con)
	return live, applied, err
}

// applyShared applies the objects that belong to no single feature (expansion templates), each
// once the CRD serving its kind exists, several at a time, and observes what Gatekeeper reports
// about them. Their failures are reported per object and never hold back the features.
func (r *Reconciler) applyShared(ctx context.Context, owner *v1alpha1.PodSecurityConstraints, inv templates.Inventory,
	crds map[string]bool, ch *changes) []objectFacts {
	var items []templates.Item
	for _, it := range inv {
		// The policy template and its constraints serve features (applyPolicy), mutators
		// belong to one (applyMutators).
		if it.Feature == "" && len(it.Features) == 0 && it.Role != templates.RoleTemplate && it.Role != templates.RoleConstraint {
			items = append(items, it)
		}
	}
	out := make([]objectFacts, len(items))
	applied := make([]bool, len(items))
	forEachConcurrently(ctx, len(items), applyParallelism, func(i int) {
		it := items[i]
		of := objectFacts{Role: it.Role, Kind: it.Object.GetKind(), Name: it.Object.GetName()}
		if mk, ok := templates.ManagedKindOf(it.Object.GroupVersionKind()); ok {
			of.CRD = mk.CRD
		}
		defer func() { out[i] = of }()
		if !crds[of.CRD] {
			of.CRDMissing = true
			return
		}
		live, changed, err := r.applyObject(ctx, owner, it.Object)
		if err != nil {
			of.ApplyError = err.Error()
			return
		}
		of.Observed = observeGatekeeperObject(live)
		applied[i] = changed
	})
	for i, it := range items {
		if label := string(it.Role); applied[i] && !slices.Contains(ch.Applied, label) {
			ch.Applied = append(ch.Applied, label) // e.g. "expansion": one entry for all of them
		}
	}
	return out
}

// gatekeeperCRDs lists the names of Gatekeeper's template and constraint CRDs that exist.
func (r *Reconciler) gatekeeperCRDs(ctx context.Context) (map[string]bool, error) {
	list := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := r.Client.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing CRDs: %w", err)
	}
	out := map[string]bool{}
	for _, crd := range list.Items {
		if isGatekeeperCRD(crd.Name) && crd.DeletionTimestamp.IsZero() {
			out[crd.Name] = true
		}
	}
	return out, nil
}

// servedKind reports whether a Gatekeeper kind can be watched: its CRD is established and
// discovery (the REST mapper) knows the kind, which can lag behind the CRD's condition.
func (r *Reconciler) servedKind(ctx context.Context, gvk schema.GroupVersionKind) bool {
	if !r.crdEstablished(ctx, gvk) {
		return false
	}
	_, err := r.Client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	return err == nil
}

// crdEstablished reports whether the CRD serving a Gatekeeper kind is established.
func (r *Reconciler) crdEstablished(ctx context.Context, gvk schema.GroupVersionKind) bool {
	name := constraintCRDName(gvk.Kind)
	if mk, ok := templates.ManagedKindOf(gvk); ok {
		name = mk.CRD
	}
	crd := r.getCRD(ctx, name)
	return crd != nil && established(crd)
}

// getCRD reads a CRD through APIReader; nil when it does not exist or cannot be read.
func (r *Reconciler) getCRD(ctx context.Context, name string) *apiextensionsv1.CustomResourceDefinition {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, crd); err != nil {
		return nil
	}
	return crd
}

// isGatekeeperCRD reports CRDs the operator cares about: those of the fixed kinds it writes
// and those of constraint kinds.
func isGatekeeperCRD(name string) bool {
	for _, mk := range templates.ManagedKinds() {
		if mk.CRD == name {
			return true
		}
	}
	return strings.HasSuffix(name, "."+constraintsGroup)
}

// constraintCRDName is the CRD Gatekeeper creates for a constraint kind.
func constraintCRDName(kind string) string {
	return strings.ToLower(kind) + "." + constraintsGroup
}

// watchedKinds are the kinds to watch given the Gatekeeper CRDs that exist: the fixed kinds
// the operator writes, and constraints of our kinds (the policy template's and the admission
// probe's) (the operator has no business watching
// anyone else's).
func watchedKinds(crds map[string]bool) []schema.GroupVersionKind {
	var kinds []schema.GroupVersionKind
	for _, mk := range templates.ManagedKinds() {
		if crds[mk.CRD] {
			kinds = append(kinds, mk.GVK)
		}
	}
	if crds[constraintCRDName(templates.PolicyKind)] {
		kinds = append(kinds, templates.ConstraintGroupVersion.WithKind(templates.PolicyKind))
	}
	if crds[constraintCRDName(probeConstraintKind)] {
		kinds = append(kinds, probeConstraintGVK())
	}
	return kinds
}

// applyObject server-side applies a desired object unless the live object already matches
// it, so a steady-state reconcile writes nothing. It returns the live object.
func (r *Reconciler) applyObject(ctx context.Context, owner *v1alpha1.PodSecurityConstraints, desired *unstructured.Unstructured) (*unstructured.Unstructured, bool, error) {
	_, live, changed, err := r.applyObjectFrom(ctx, owner, desired)
	return live, changed, err
}

// applyObjectFrom is applyObject that also returns the live object it found before applying
// (nil when there was none or the object was up to date).
func (r *Reconciler) applyObjectFrom(ctx context.Context, owner *v1alpha1.PodSecurityConstraints, desired *unstructured.Unstructured) (prev, live *unstructured.Unstructured, changed bool, err error) {
	desired = desired.DeepCopy()
	desired.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: v1alpha1.GroupVersion.String(),
		Kind:       "PodSecurityConstraints",
		Name:       owner.Name,
		UID:        owner.UID,
	}})

	live = &unstructured.Unstructured{}
	live.SetGroupVersionKind(desired.GroupVersionKind())
	err = r.APIReader.Get(ctx, types.NamespacedName{Name: desired.GetName()}, live)
	switch {
	case err == nil && upToDate(desired, live):
		return nil, live, false, nil
	case err == nil:
		prev = live
	case !apierrors.IsNotFound(err):
		return nil, nil, false, fmt.Errorf("getting %s %s: %w", desired.GetKind(), desired.GetName(), err)
	}
	//nolint:staticcheck // SSA of unstructured objects through Patch is the supported path for dynamic kinds.
	if err := r.Client.Patch(ctx, desired, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return nil, nil, false, fmt.Errorf("applying %s %s: %w", desired.GetKind(), desired.GetName(), err)
	}
	// The cache can lag behind the operator's own last apply (its watch event not delivered
	// yet), and then the apply above changed nothing on the server: the resourceVersion the
	// server returns is the one it returned last time. Such an apply is not a change (no
	// Applied event, no log line).
	rv := desired.GetResourceVersion()
	if last := r.lastApplied.swap(desired.GetKind()+"/"+desired.GetName(), rv); rv != "" && (rv == last || (err == nil && rv == live.GetResourceVersion())) {
		return nil, desired, false, nil
	}
	logf.FromContext(ctx).Info("Applied object", "kind", desired.GetKind(), "name", desired.GetName(),
		"uid", desired.GetUID(), "resourceVersion", rv)
	return prev, desired, true, nil
}

// appliedVersions remembers the resourceVersion the server returned for each object the
// operator last applied (applyObject).
type appliedVersions struct {
	mu sync.Mutex
	rv map[string]string
}

// swap records rv for key and returns the one recorded before ("" if none).
func (a *appliedVersions) swap(key, rv string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rv == nil {
		a.rv = map[string]string{}
	}
	prev := a.rv[key]
	a.rv[key] = rv
	return prev
}

// upToDate reports whether every field the operator sets has the desired value in the live
// object; fields others set (status, defaults, metadata) are ignored. A constraint's
// spec.parameters is compared whole: nobody else sets or defaults anything there, and a key
// the operator no longer sets (a feature switched off or moved to another constraint, a
// parameter left out) must go.
func upToDate(desired, live *unstructured.Unstructured) bool {
	if !subset(toInterfaceMap(desired.GetLabels()), toInterfaceMap(live.GetLabels())) {
		return false
	}
	if !ownerRefsMatch(desired.GetOwnerReferences(), live.GetOwnerReferences()) {
		return false
	}
	if desired.GroupVersionKind().Group == constraintsGroup {
		want, _, _ := unstructured.NestedFieldNoCopy(desired.Object, "spec", "parameters")
		have, _, _ := unstructured.NestedFieldNoCopy(live.Object, "spec", "parameters")
		if !sameValue(want, have) {
			return false
		}
	}
	return subset(desired.Object["spec"], live.Object["spec"])
}

func ownerRefsMatch(desired, live []metav1.OwnerReference) bool {
	for _, d := range desired {
		found := false
		for _, l := range live {
			if l.UID == d.UID && l.Kind == d.Kind && l.Name == d.Name {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// subset reports whether want is contained in have: maps by key, lists element by element and
// exactly as long, scalars equal (numbers compared by value).
func subset(want, have interface{}) bool { return jsonMatch(want, have, false) }

// sameValue reports whether two JSON values are equal: maps with the same keys, lists of the
// same length, scalars equal (numbers compared by value).
func sameValue(a, b interface{}) bool { return jsonMatch(a, b, true) }

// jsonMatch is subset, or with exact sameValue: maps then need the same keys, and a missing map
// or list is not an empty one.
func jsonMatch(want, have interface{}, exact bool) bool {
	switch w := want.(type) {
	case map[string]interface{}:
		h, ok := have.(map[string]interface{})
		if !ok {
			return !exact && len(w) == 0 && have == nil
		}
		if exact && len(w) != len(h) {
			return false
		}
		for k, v := range w {
			hv, found := h[k]
			if (exact && !found) || !jsonMatch(v, hv, exact) {
				return false
			}
		}
		return true
	case []interface{}:
		h, ok := have.([]interface{})
		if !ok {
			return !exact && len(w) == 0 && have == nil
		}
		if len(w) != len(h) {
			return false
		}
		for i := range w {
			if !jsonMatch(w[i], h[i], exact) {
				return false
			}
		}
		return true
	case int64, int32, int, float64:
		wf, ok1 := toFloat(w)
		hf, ok2 := toFloat(have)
		return ok1 && ok2 && wf == hf
	default:
		return want == have
	}
}

func toFloat(v interface{}) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func toInterfaceMap(m map[string]string) map[string]interface{} {
	out := make(map[string]interface{}, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// pruneStale deletes every object labelled as ours that is not in the desired inventory, in
// reverse apply order: the objects of no single feature (expansion templates) and mutators,
// then constraints, then templates (also the per-feature templates of older operator versions).
// Objects without our label are never touched, nor is the admission probe's policy
// (reconcileAdmissionProbe and the finalizer remove it). With holdTemplates, stale templates
// are kept (the policy that replaces them is not enforced yet). While the constraint CRD is
// being deleted, its constraints are deleted too, wanted or not (deleteDoomedConstraint).
// Only what it deleted itself is reported pruned.
func (r *Reconciler) pruneStale(ctx context.Context, desired templates.Inventory, holdTemplates bool) ([]string, error) {
	want := map[string]bool{}
	for _, obj := range desired.Objects() {
		want[obj.GetKind()+"/"+obj.GetName()] = true
	}
	ours := client.MatchingLabels{templates.LabelManagedBy: templates.ManagedByValue}
	var pruned []string
	var errs []error

	// Fixed kinds other than templates, last applied first. A kind without its CRD has no
	// objects to prune.
	managed := templates.ManagedKinds()
	for i := len(managed) - 1; i >= 0; i-- {
		mk := managed[i]
		if mk.Role == templates.RoleTemplate {
			continue
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(mk.GVK.GroupVersion().WithKind(mk.GVK.Kind + "List"))
		if err := r.APIReader.List(ctx, list, ours); err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				continue
			}
			errs = append(errs, fmt.Errorf("listing %s objects: %w", mk.GVK.Kind, err))
			continue
		}
		for i := range list.Items {
			pruned, errs = r.deleteUnwanted(ctx, &list.Items[i], want, pruned, errs)
		}
	}

	tmplList := &unstructured.UnstructuredList{}
	tmplList.SetGroupVersionKind(templates.TemplateGVK.GroupVersion().WithKind("ConstraintTemplateList"))
	if err := r.APIReader.List(ctx, tmplList, ours); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return pruned, errors.Join(errs...) // Gatekeeper is not installed: no templates or constraints.
		}
		return pruned, errors.Join(append(errs, fmt.Errorf("listing ConstraintTemplates: %w", err))...)
	}

	// Constraints are listed of the policy template's kind only: the operator may not read
	// other kinds (RBAC). The templates of an older layout (one per feature, psc<feature>) are
	// pruned below, and Gatekeeper deletes their constraint CRDs, and the constraints with them.
	// A constraint's watch that has not listed its objects yet is read from the API server.
	conList := &unstructured.UnstructuredList{}
	conList.SetGroupVersionKind(templates.ConstraintGroupVersion.WithKind(templates.PolicyKind + "List"))
	if err := r.APIReader.List(ctx, conList, ours); err != nil && !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err) {
		// Keep the templates while their constraints cannot be listed.
		return pruned, errors.Join(append(errs, fmt.Errorf("listing %s constraints: %w", templates.PolicyKind, err))...)
	}
	constraintErrs := 0
	// Wanted constraints go too while their CRD is being deleted (deleteDoomedConstraint).
	doomed := len(conList.Items) > 0 && r.crdTerminating(ctx, constraintCRDName(templates.PolicyKind))
	for i := range conList.Items {
		con := &conList.Items[i]
		before := len(errs)
		if doomed && want[con.GetKind()+"/"+con.GetName()] {
			errs = r.deleteDoomedConstraint(ctx, con, errs)
		} else {
			pruned, errs = r.deleteUnwanted(ctx, con, want, pruned, errs)
		}
		constraintErrs += len(errs) - before
	}
	if constraintErrs > 0 {
		// Keep the templates while their constraints could not be pruned.
		return pruned, errors.Join(errs...)
	}
	for i := range tmplList.Items {
		if holdTemplates && !want[tmplList.Items[i].GetKind()+"/"+tmplList.Items[i].GetName()] {
			logf.FromContext(ctx).V(1).Info("Keeping a stale template until every feature is enforced", "name", tmplList.Items[i].GetName())
			continue
		}
		pruned, errs = r.deleteUnwanted(ctx, &tmplList.Items[i], want, pruned, errs)
	}
	return pruned, errors.Join(errs...)
}

func (r *Reconciler) deleteUnwanted(ctx context.Context, obj *unstructured.Unstructured, want map[string]bool, pruned []string, errs []error) ([]string, []error) {
	id := obj.GetKind() + "/" + obj.GetName()
	if want[id] || !obj.GetDeletionTimestamp().IsZero() || isProbeObject(obj) {
		return pruned, errs
	}
	deleted, err := r.deleteListed(ctx, obj)
	if err != nil {
		return pruned, append(errs, fmt.Errorf("deleting %s: %w", id, err))
	}
	if !deleted {
		return pruned, errs
	}
	logf.FromContext(ctx).Info("Pruned object", "kind", obj.GetKind(), "name", obj.GetName(),
		"uid", obj.GetUID(), "resourceVersion", obj.GetResourceVersion())
	return append(pruned, id), errs
}

// deleteListed deletes the object as it was listed, and only that one: the list may come from a
// cache that lags behind the API server, and a delete by name alone would remove an object of
// the same name created since. It reports whether it deleted the object; false, without an
// error, when the object is gone already (a stale list: whoever deleted it reported it) or was
// replaced by a newer one of the same name.
func (r *Reconciler) deleteListed(ctx context.Context, obj *unstructured.Unstructured) (bool, error) {
	uid := obj.GetUID()
	opts := []client.DeleteOption{client.PropagationPolicy(metav1.DeletePropagationBackground)}
	if uid != "" {
		opts = append(opts, client.Preconditions{UID: &uid})
	}
	err := r.Client.Delete(ctx, obj, opts...)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	case apierrors.IsConflict(err) && uid != "":
		// The UID precondition failed: the object was deleted and created again.
		logf.FromContext(ctx).V(1).Info("Not deleting an object created again since it was listed", "kind", obj.GetKind(), "name", obj.GetName(), "listedUID", uid)
		return false, nil
	default:
		return false, err
	}
}

// crdTerminating reports whether the CRD with this name is being deleted.
func (r *Reconciler) crdTerminating(ctx context.Context, name string) bool {
	crd := r.getCRD(ctx, name)
	return crd != nil && !crd.DeletionTimestamp.IsZero()
}

// deleteDoomedConstraint deletes a constraint whose CRD is being deleted, wanted or not: the
// CRD takes every constraint of its kind with it, and the operator applies it again once
// Gatekeeper has created the CRD anew. Leaving it is not harmless. The API server deletes the
// objects of a CRD it removes, then checks every 5 seconds for a minute that none is left
// before it lets the CRD go; an object created after it looked (the operator applying a
// constraint while Gatekeeper removes the CRD of a template deleted and applied again in quick
// succession, and the API server has not marked the CRD terminating yet) keeps the CRD
// terminating for that minute, and Gatekeeper cannot create the CRD of the template that
// exists meanwhile: the policy is not enforced, and the operator waits.
func (r *Reconciler) deleteDoomedConstraint(ctx context.Context, obj *unstructured.Unstructured, errs []error) []error {
	if !obj.GetDeletionTimestamp().IsZero() {
		return errs
	}
	deleted, err := r.deleteListed(ctx, obj)
	if err != nil {
		return append(errs, fmt.Errorf("deleting %s/%s, whose CRD is being deleted: %w", obj.GetKind(), obj.GetName(), err))
	}
	if deleted {
		logf.FromContext(ctx).Info("Deleted a constraint whose CRD is being deleted; it is applied again once Gatekeeper has created the CRD anew",
			"kind", obj.GetKind(), "name", obj.GetName(), "uid", obj.GetUID(), "resourceVersion", obj.GetResourceVersion())
	}
	return errs
}

// isTransient reports errors that ordering explains: Gatekeeper has not created the
// constraint CRD or loaded the template yet, or someone else wrote the object meanwhile.
func isTransient(err error) bool {
	return meta.IsNoMatchError(err) || apierrors.IsConflict(err) ||
		strings.Contains(err.Error(), "missing ConstraintTemplate") ||
		apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err)
}
