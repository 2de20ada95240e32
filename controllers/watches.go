package controllers

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

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
	for _, gvk := range kinds {
		want[gvk] = true
		if w.watched[gvk] || !established(gvk) {
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
