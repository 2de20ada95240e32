package controllers

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/templates"
)

// dynamicWatches watches Gatekeeper's kinds while their CRDs exist. Templates and constraint
// kinds come and go with Gatekeeper and with the features, so their watches cannot be set
// up front: a watch on a kind without a CRD would keep the manager from starting.
type dynamicWatches struct {
	ctrl    controller.Controller
	cache   cache.Cache
	handler handler.EventHandler

	mu      sync.Mutex
	watched map[schema.GroupVersionKind]bool
}

func newDynamicWatches(c controller.Controller, ch cache.Cache, h handler.EventHandler) *dynamicWatches {
	return &dynamicWatches{ctrl: c, cache: ch, handler: h, watched: map[schema.GroupVersionKind]bool{}}
}

// sync starts watches for the given kinds and stops the others. Only objects labelled as
// ours trigger a reconcile. A kind is only watched once established says its CRD is served:
// a watch started earlier fails discovery and controller-runtime retries it only after
// several seconds, during which deletions would go unseen. The CRD's status update triggers
// the next reconcile, which starts the watch.
//
// It reports whether a watch was started: objects deleted before the new informer listed
// them raise no event, so the caller looks again shortly.
func (w *dynamicWatches) sync(ctx context.Context, kinds []schema.GroupVersionKind, established func(schema.GroupVersionKind) bool) bool {
	if w == nil {
		return false
	}
	started := false
	log := logf.FromContext(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	want := map[schema.GroupVersionKind]bool{}
	var candidates []schema.GroupVersionKind
	for _, gvk := range kinds {
		want[gvk] = true
		if !w.watched[gvk] {
			candidates = append(candidates, gvk)
		}
	}
	// A check may refresh discovery (the REST mapper learns a new kind from the API server);
	// while Gatekeeper creates the constraint CRDs of a new spec, many kinds wait at once.
	ready := make([]bool, len(candidates))
	forEachConcurrently(ctx, len(candidates), applyParallelism, func(i int) { ready[i] = established(candidates[i]) })
	for i, gvk := range candidates {
		if !ready[i] {
			continue
		}
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(gvk)
		ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetLabels()[templates.LabelManagedBy] == templates.ManagedByValue
		})
		if err := w.ctrl.Watch(source.Kind[client.Object](w.cache, obj, w.handler, ours)); err != nil {
			log.Error(err, "Failed to watch kind; drift is caught by the periodic refresh", "kind", gvk.Kind)
			continue
		}
		w.watched[gvk] = true
		started = true
		log.V(1).Info("Started watch", "kind", gvk.Kind)
	}
	for gvk := range w.watched {
		if want[gvk] {
			continue
		}
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(gvk)
		if err := w.cache.RemoveInformer(ctx, obj); err != nil {
			log.Error(err, "Failed to stop watch", "kind", gvk.Kind)
			continue
		}
		delete(w.watched, gvk)
		log.V(1).Info("Stopped watch", "kind", gvk.Kind)
	}
	return started
}

// auditCoalesceDelay is how long a reconcile waits after an audit-only status update of a
// Gatekeeper object. Gatekeeper's audit writes the results of all our constraints within a
// second or so; waiting gathers them into one reconcile and one status write per audit cycle.
const auditCoalesceDelay = 5 * time.Second

var clusterRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: v1alpha1.ClusterName}}

// gatekeeperEvents maps events of our templates and constraints to the CR: at once for
// anything that changes what is applied or enforced (spec, labels, owners, deletion, the
// pods' enforcement status), after auditCoalesceDelay for audit results only.
type gatekeeperEvents struct {
	delay time.Duration
}

var _ handler.EventHandler = gatekeeperEvents{}

func (h gatekeeperEvents) Create(_ context.Context, _ event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	q.Add(clusterRequest)
}

func (h gatekeeperEvents) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if auditResultsOnly(e.ObjectOld, e.ObjectNew) {
		q.AddAfter(clusterRequest, h.delay)
		return
	}
	q.Add(clusterRequest)
}

func (h gatekeeperEvents) Delete(_ context.Context, _ event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	q.Add(clusterRequest)
}

func (h gatekeeperEvents) Generic(_ context.Context, _ event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	q.Add(clusterRequest)
}

// auditFields are the status fields Gatekeeper's audit rewrites every cycle.
var auditFields = []string{"auditTimestamp", "totalViolations", "violations"}

// auditResultsOnly reports whether an update changed nothing but audit results.
func auditResultsOnly(oldObj, newObj client.Object) bool {
	o, ok1 := oldObj.(*unstructured.Unstructured)
	n, ok2 := newObj.(*unstructured.Unstructured)
	if !ok1 || !ok2 {
		return false
	}
	strip := func(u *unstructured.Unstructured) map[string]interface{} {
		c := runtime.DeepCopyJSON(u.Object)
		unstructured.RemoveNestedField(c, "metadata", "resourceVersion")
		unstructured.RemoveNestedField(c, "metadata", "managedFields")
		for _, f := range auditFields {
			unstructured.RemoveNestedField(c, "status", f)
		}
		return c
	}
	return equality.Semantic.DeepEqual(strip(o), strip(n))
}
