// Package controllers holds the PodSecurityConstraints reconciler: it applies the rendered
// Gatekeeper objects, prunes stale ones and reports Gatekeeper's view back onto the CR.
package controllers

import (
	"context"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

const (
	// Finalizer makes sure every generated object is pruned before the CR goes: neither a bare
	// control plane nor envtest runs a garbage collector for the owner references.
	Finalizer = "policy.podsecurity.dev/finalizer"
	// FieldManager owns the generated objects (server-side apply, forced).
	FieldManager = "psc-operator"
	// StatusFieldManager writes the CR's status.
	StatusFieldManager = "psc-operator-status"

	// transientRequeue is how soon a reconcile that waits for Gatekeeper comes back.
	transientRequeue = 2 * time.Second
	// gatekeeperAbsentRequeue is how often the operator looks for Gatekeeper while it is not
	// installed (the CRD watch usually notices it first).
	gatekeeperAbsentRequeue = 15 * time.Second
)

// Reconciler reconciles the PodSecurityConstraints object named "cluster".
type Reconciler struct {
	// Client reads the CR from the cache and writes everything.
	Client client.Client
	// APIReader reads Gatekeeper objects and CRDs. main.go wires it to NewGatekeeperReader:
	// templates, constraints and CRDs (trimmed) from the informer cache the watches keep
	// current (a stale read costs at most an idempotent re-apply).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Options   templates.Options
	// RefreshInterval is how often status is refreshed without any change (audit results
	// change on their own).
	RefreshInterval time.Duration
	Metrics         *Metrics
	// Probe verifies end to end that admission denies violations (probe.go); nil: off, and
	// Ready rests on Gatekeeper's status alone.
	Probe *AdmissionProbe

	watches  *dynamicWatches
	vapWatch *vapWatches
	applied  appliedEvents
	verdict  specVerdict
	// lastApplied tells an apply that changed something from one the cache made look needed.
	lastApplied appliedVersions
}

// create: the spec is validated with a dry-run create of a copy (validate.go); nothing is stored.
// +kubebuilder:rbac:groups=policy.podsecurity.dev,resources=podsecurityconstraints,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=policy.podsecurity.dev,resources=podsecurityconstraints/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=policy.podsecurity.dev,resources=podsecurityconstraints/finalizers,verbs=update
// +kubebuilder:rbac:groups=templates.gatekeeper.sh,resources=constrainttemplates,verbs=get;list;watch;create;update;patch;delete
// Only our own constraint kind, by name: the policy template's (templates.PolicyKind) serves
// every feature; RBACMatchesRegistry in config/config_test.go keeps this line in step with it.
// Constraints of the per-feature kinds of older versions are not read: pruning their templates
// makes Gatekeeper delete their CRDs, and them with those.
// +kubebuilder:rbac:groups=constraints.gatekeeper.sh,resources=pscpodsecurity,verbs=get;list;watch;create;update;patch;delete
// ExpansionTemplates make Gatekeeper judge workloads as the Pods they would create (the
// resource name is the singular word).
// +kubebuilder:rbac:groups=expansion.gatekeeper.sh,resources=expansiontemplate,verbs=get;list;watch;create;update;patch;delete
// Mutators fill in what a feature requires where a pod leaves it unset (setDefaults); the
// resource names are the singular words.
// +kubebuilder:rbac:groups=mutations.gatekeeper.sh,resources=assign;modifyset,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the controller. Gatekeeper's kinds are watched as their CRDs
// appear, so the operator starts and runs whether or not Gatekeeper is installed.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	toCluster := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []ctrl.Request {
		return []ctrl.Request{{NamespacedName: types.NamespacedName{Name: v1alpha1.ClusterName}}}
	})
	gatekeeperCRDs := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return isGatekeeperCRD(o.GetName())
	})
	b := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.PodSecurityConstraints{}).
		Watches(&apiextensionsv1.CustomResourceDefinition{}, toCluster, builder.WithPredicates(gatekeeperCRDs)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1})
	if r.Probe != nil {
		if err := mgr.Add(r.Probe); err != nil {
			return fmt.Errorf("adding the admission probe: %w", err)
		}
		b = b.WatchesRawSource(source.Channel(r.Probe.Events(), toCluster))
	}
	c, err := b.Build(r)
	if err != nil {
		return fmt.Errorf("building controller: %w", err)
	}
	r.watches = newDynamicWatches(c, mgr.GetCache(), gatekeeperEvents{delay: auditCoalesceDelay})
	r.vapWatch = &vapWatches{ctrl: c, cache: mgr.GetCache(), handler: gatekeeperEvents{delay: auditCoalesceDelay}}
	return nil
}

// Reconcile gets the object, handles deletion, runs the pipeline, and writes the status
// derived from what the pipeline found.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	obj := &v1alpha1.PodSecurityConstraints{}
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if obj.Name != v1alpha1.ClusterName {
		return ctrl.Result{}, r.reconcileDuplicate(ctx, obj)
	}
	if !obj.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, obj)
	}
	if !controllerutil.ContainsFinalizer(obj, Finalizer) {
		patch := client.MergeFrom(obj.DeepCopy())
		controllerutil.AddFinalizer(obj, Finalizer)
		if err := r.Client.Patch(ctx, obj, patch, client.FieldOwner(FieldManager)); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
		log.V(1).Info("Added finalizer")
	}

	start := time.Now()
	ctx, steps := withStepTimes(ctx)
	prev := obj.Status.DeepCopy()
	facts, ch, result := r.reconcile(ctx, obj)
	facts.Admission, result = r.reconcileAdmissionProbe(ctx, obj, facts, result)
	stepDone(ctx, "probe")
	status := deriveStatus(facts, *prev, metav1.Now())
	if err := r.patchStatus(ctx, obj, status); err != nil {
		return ctrl.Result{}, err
	}
	stepDone(ctx, "status")
	ch.Applied = r.applied.collect(obj.UID, obj.Generation, ch.Applied, rolloutDone(facts))
	r.recordEvents(obj, prev, &status, &ch)
	r.Metrics.observe(status)
	ready := readyOf(status)
	log.V(1).Info("Reconciled", "ready", ready.Status, "reason", ready.Reason,
		"enabled", status.EnabledFeatures, "enforced", status.EnforcedFeatures, "duration", time.Since(start).String(), "steps", steps.String())
	return result, nil
}

// patchStatus writes the status only when it changed. It server-side applies the whole
// status under its own field manager: a merge patch would leave out zero counts the object
// has never had, and printer columns would show them empty.
func (r *Reconciler) patchStatus(ctx context.Context, obj *v1alpha1.PodSecurityConstraints, status v1alpha1.PodSecurityConstraintsStatus) error {
	if equality.Semantic.DeepEqual(obj.Status, status) {
		return nil
	}
	st, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&status)
	if err != nil {
		return fmt.Errorf("encoding status: %w", err)
	}
	patch := &unstructured.Unstructured{Object: map[string]interface{}{"status": st}}
	patch.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("PodSecurityConstraints"))
	patch.SetName(obj.Name)
	//nolint:staticcheck // SSA through Patch keeps the status in one unstructured apply.
	if err := r.Client.Status().Patch(ctx, patch, client.Apply, client.FieldOwner(StatusFieldManager), client.ForceOwnership); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("patching status: %w", err)
	}
	r.Metrics.statusUpdated()
	obj.Status = status
	return nil
}

// reconcileDuplicate marks an object with another name as stalled; it is never acted on.
func (r *Reconciler) reconcileDuplicate(ctx context.Context, obj *v1alpha1.PodSecurityConstraints) error {
	facts := reconcileFacts{Generation: obj.Generation, Stalled: &failure{
		Reason:  ReasonDuplicate,
		Message: fmt.Sprintf("Only the PodSecurityConstraints named %q is acted on; delete this one.", v1alpha1.ClusterName),
	}}
	prev := obj.Status.DeepCopy()
	status := deriveStatus(facts, *prev, metav1.Now())
	if err := r.patchStatus(ctx, obj, status); err != nil {
		return err
	}
	r.recordEvents(obj, prev, &status, nil)
	return nil
}

// reconcileDelete prunes every generated object, then lets the CR go.
func (r *Reconciler) reconcileDelete(ctx context.Context, obj *v1alpha1.PodSecurityConstraints) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(obj, Finalizer) {
		return ctrl.Result{}, nil
	}
	pruned, err := r.pruneStale(ctx, nil, false)
	if err == nil && r.Probe != nil {
		r.Probe.Arm(false)
		err = r.removeProbePolicy(ctx)
	}
	if err != nil {
		r.Recorder.Eventf(obj, nil, "Warning", ReasonPruneFailed, "Delete", "Pruning generated objects failed: %v", err)
		return ctrl.Result{}, fmt.Errorf("pruning before deletion: %w", err)
	}
	if len(pruned) > 0 {
		logf.FromContext(ctx).Info("Pruned generated objects before deletion", "objects", pruned)
	}
	patch := client.MergeFrom(obj.DeepCopy())
	controllerutil.RemoveFinalizer(obj, Finalizer)
	if err := r.Client.Patch(ctx, obj, patch, client.FieldOwner(FieldManager)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("removing finalizer: %w", err))
	}
	r.Metrics.forget()
	return ctrl.Result{}, nil
}

func readyOf(st v1alpha1.PodSecurityConstraintsStatus) metav1.Condition {
	for _, c := range st.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			return c
		}
	}
	return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionUnknown}
}
