// Package policytest evaluates Gatekeeper ConstraintTemplates and Constraints
// with the real OPA engine, the same way Gatekeeper's validating admission
// webhook does.
//
// It wires the frameworks/constraint client with the Rego driver and
// Gatekeeper's Kubernetes validation target (target.K8sValidationTarget),
// restricted to the webhook enforcement point ("validation.gatekeeper.sh").
// Each Review builds a target.AugmentedReview around an
// admissionv1.AdmissionRequest plus a Namespace object, exactly like
// pkg/webhook/policy.go does in Gatekeeper v3.23, so that spec.match
// (kinds, namespaces, excludedNamespaces incl. "kube-*" globs,
// namespaceSelector, ...), template spec.targets[].operations and the Rego
// input (input.review.*, input.parameters) behave as in a cluster.
//
// An Evaluator is safe for concurrent and repeated use (benchmarks may call
// Review in a loop); tracing and stats are disabled.
//
// Two engines (see Engine): Rego alone, as Gatekeeper runs with
// --enable-k8s-native-validation=false, or Gatekeeper's default, where the
// K8sNativeValidation (CEL) driver is registered before the Rego driver so
// that a template with CEL code is evaluated by CEL and any other by Rego.
//
// Mutation (Assign, ModifySet) runs with Gatekeeper's own mutation system
// through a Mutator, before Review, as the mutating webhook runs before the
// validating one; New ignores mutators.
//
// Not modelled: Gatekeeper's Config-based process exclusions, expansion
// (generator resources; Request.Generated reviews one generated resource the
// way the webhook does), external data, and referential data (data.inventory
// is allowed but always empty).
package policytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-logr/logr"
	templatesv1 "github.com/open-policy-agent/frameworks/constraint/pkg/apis/templates/v1"
	constraintclient "github.com/open-policy-agent/frameworks/constraint/pkg/client"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/drivers/rego"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/reviews"
	"github.com/open-policy-agent/frameworks/constraint/pkg/core/templates"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/drivers/k8scel"
	mutationtypes "github.com/open-policy-agent/gatekeeper/v3/pkg/mutation/types"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/target"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/util"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const (
	templatesGroup   = "templates.gatekeeper.sh"
	constraintsGroup = "constraints.gatekeeper.sh"
	mutationsGroup   = "mutations.gatekeeper.sh"

	// DefaultNamespace is used for namespaced requests when neither
	// Request.Namespace nor the object's metadata.namespace is set.
	DefaultNamespace = "default"
)

// Evaluator holds a frameworks/constraint client loaded with templates and
// constraints. Create it with New.
type Evaluator struct {
	client *constraintclient.Client
}

// Engine is the policy engine configuration of the evaluated Gatekeeper.
type Engine string

const (
	// EngineRego evaluates every template's Rego, as Gatekeeper does with
	// --enable-k8s-native-validation=false.
	EngineRego Engine = "Rego"
	// EngineCEL is Gatekeeper's default (--enable-k8s-native-validation=true):
	// the K8sNativeValidation driver comes first, so a template's CEL code is
	// used when it has some, and its Rego otherwise.
	EngineCEL Engine = "K8sNativeValidation"
)

// Engines lists every engine configuration, Gatekeeper's default first.
func Engines() []Engine { return []Engine{EngineCEL, EngineRego} }

// New is NewWithEngine with EngineRego.
func New(ctx context.Context, objs []*unstructured.Unstructured) (*Evaluator, error) {
	return NewWithEngine(ctx, EngineRego, objs)
}

// NewWithEngine builds a frameworks client configured like Gatekeeper's webhook
// (with EngineCEL the K8sNativeValidation driver, then the Rego driver without
// tracing and with the data.inventory extern, in this order as in Gatekeeper's
// main.go; Gatekeeper's K8s validation target, webhook enforcement point) and
// adds every object:
// ConstraintTemplates (templates.gatekeeper.sh/v1) first, then constraints
// (constraints.gatekeeper.sh/v1beta1 or any other version, any kind), so
// the input order does not matter. Errors name the offending object.
//
// Templates are decoded and defaulted like the API server would (CRD
// structural defaults) and converted with the frameworks' v1 conversion
// functions, the same path Gatekeeper and gator use. Constraints are
// validated against the generated constraint CRD schema and their
// spec.enforcementAction is checked like Gatekeeper's admission validation.
func NewWithEngine(ctx context.Context, engine Engine, objs []*unstructured.Unstructured) (*Evaluator, error) {
	opts := []constraintclient.Opt{constraintclient.Targets(&target.K8sValidationTarget{})}
	switch engine {
	case EngineCEL:
		// The frameworks client prefers the driver registered first.
		celDriver, err := k8scel.New()
		if err != nil {
			return nil, fmt.Errorf("creating K8sNativeValidation driver: %w", err)
		}
		opts = append(opts, constraintclient.Driver(celDriver))
	case EngineRego:
	default:
		return nil, fmt.Errorf("unknown engine %q", engine)
	}
	driver, err := rego.New(rego.Tracing(false), rego.Externs("inventory"))
	if err != nil {
		return nil, fmt.Errorf("creating rego driver: %w", err)
	}
	opts = append(opts, constraintclient.Driver(driver), constraintclient.EnforcementPoints(util.WebhookEnforcementPoint))
	client, err := constraintclient.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating constraint client: %w", err)
	}

	var tmpls, cons []*unstructured.Unstructured
	for i, o := range objs {
		if o == nil {
			return nil, fmt.Errorf("object %d is nil", i)
		}
		switch o.GroupVersionKind().Group {
		case templatesGroup:
			tmpls = append(tmpls, o)
		case constraintsGroup:
			cons = append(cons, o)
		case mutationsGroup:
			// Mutators are run by a Mutator, before the review.
			continue
		default:
			return nil, fmt.Errorf("%s: neither a ConstraintTemplate nor a constraint", describe(o))
		}
	}

	for _, u := range tmpls {
		ct, err := toTemplate(u)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", describe(u), err)
		}
		if err := validateOperations(ct); err != nil {
			return nil, fmt.Errorf("%s: %w", describe(u), err)
		}
		if _, err := client.AddTemplate(ctx, ct); err != nil {
			return nil, fmt.Errorf("adding %s: %w", describe(u), err)
		}
	}

	for _, u := range cons {
		// Copy through JSON: never touches the caller's object and normalizes
		// Go values (e.g. int) that unstructured.DeepCopy would panic on.
		c, err := jsonCopy(u)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", describe(u), err)
		}
		// Gatekeeper's constraint controller drops status before caching.
		unstructured.RemoveNestedField(c.Object, "status")
		if err := validateEnforcementAction(c); err != nil {
			return nil, fmt.Errorf("%s: %w", describe(u), err)
		}
		if _, err := client.AddConstraint(ctx, c); err != nil {
			return nil, fmt.Errorf("adding %s: %w", describe(u), err)
		}
	}

	return &Evaluator{client: client}, nil
}

// Request describes one admission request. Zero values get the defaults
// noted per field.
type Request struct {
	// Operation is "CREATE" (default), "UPDATE", "DELETE" or "CONNECT".
	// Note that Gatekeeper's default webhook configuration only sends
	// CREATE and UPDATE.
	Operation string
	// SubResource, e.g. "ephemeralcontainers" (sent with Operation UPDATE
	// and the whole Pod as Object/OldObject, like the API server does).
	SubResource string
	// Namespace of the request. Defaults to Object's metadata.namespace,
	// else DefaultNamespace. Ignored for Namespace objects, whose requests
	// carry no namespace. The value is also written into a copy of the
	// object(s) when their metadata.namespace is empty, as the API server does.
	Namespace string
	// NamespaceLabels are the labels of the Namespace object that Gatekeeper
	// would read from its cache (used by spec.match.namespaceSelector and
	// visible as input.review.namespaceObject). The API server's automatic
	// "kubernetes.io/metadata.name" label is always added.
	NamespaceLabels map[string]string
	// Object is the object under review (for pods: a full Pod, apiVersion
	// and kind default to "v1"/"Pod"). For DELETE it is used as OldObject
	// when OldObject is nil.
	Object map[string]interface{}
	// OldObject is the stored object; required for UPDATE and DELETE.
	OldObject map[string]interface{}
	// Username is the requesting user (input.review.userInfo.username).
	Username string
	// Generated reviews Object as Gatekeeper reviews a resource generated by an
	// ExpansionTemplate (a workload judged as the Pod it would create): a
	// target.AugmentedUnstructured with Source "Generated", the parent's
	// Operation (CREATE or UPDATE), and no oldObject, userInfo or subResource,
	// exactly like createReviewForResultant in pkg/webhook/policy.go.
	Generated bool
}

// Violation is one result reported by a matching constraint.
type Violation struct {
	Kind              string // constraint kind
	Constraint        string // constraint name
	EnforcementAction string // "deny", "warn" or "dryrun"
	Message           string
}

// Review evaluates req like Gatekeeper's admission webhook does: it wraps an
// admissionv1.AdmissionRequest and the request's Namespace object into a
// target.AugmentedReview (Source "Original", IsAdmission true) and reviews it
// at the webhook enforcement point, passing the Namespace object so that
// input.review.namespaceObject is populated. The Rego therefore sees
// input.review.{operation,subResource,object,oldObject,namespace,name,
// kind,resource,userInfo,...} exactly as the webhook provides them.
//
// It returns all results sorted by kind, then message, then constraint
// name. Constraints with scoped enforcement actions yield one Violation per
// action configured for the webhook. As in Gatekeeper, match errors
// ("autoreject") and Rego evaluation errors are reported as violations of
// the affected constraints, not as errors.
func (e *Evaluator) Review(ctx context.Context, req Request) ([]Violation, error) {
	if req.Generated {
		return e.reviewGenerated(ctx, req)
	}
	ar, ns, err := buildAdmissionRequest(req)
	if err != nil {
		return nil, err
	}

	review := &target.AugmentedReview{
		AdmissionRequest: ar,
		Namespace:        ns,
		Source:           mutationtypes.SourceTypeOriginal,
		IsAdmission:      true,
	}
	return e.review(ctx, review, ns, fmt.Sprintf("%s %s/%s", ar.Operation, ar.Namespace, ar.Name))
}

// reviewGenerated reviews req.Object the way Gatekeeper's webhook reviews each resultant of an
// expansion (createReviewForResultant): the object, its Namespace, the parent request's
// operation and Source "Generated".
func (e *Evaluator) reviewGenerated(ctx context.Context, req Request) ([]Violation, error) {
	op := admissionv1.Operation(strings.ToUpper(req.Operation))
	if op == "" {
		op = admissionv1.Create
	}
	if op != admissionv1.Create && op != admissionv1.Update {
		return nil, fmt.Errorf("a generated review takes the parent's CREATE or UPDATE, not %q", req.Operation)
	}
	if req.Object == nil || req.OldObject != nil || req.SubResource != "" {
		return nil, errors.New("a generated review needs Object and takes no OldObject or SubResource")
	}
	gvk := objectGVK(req.Object)
	nsName := req.Namespace
	if nsName == "" {
		nsName, _, _ = unstructured.NestedString(req.Object, "metadata", "namespace")
	}
	if nsName == "" {
		nsName = DefaultNamespace
	}
	raw, err := encodeObject(req.Object, gvk, nsName)
	if err != nil {
		return nil, fmt.Errorf("encoding Object: %w", err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("decoding Object: %w", err)
	}
	ns := namespaceObject(nsName, req.NamespaceLabels)
	review := &target.AugmentedUnstructured{
		Object:    *obj,
		Namespace: ns,
		Operation: op,
		Source:    mutationtypes.SourceTypeGenerated,
	}
	return e.review(ctx, review, ns, fmt.Sprintf("generated %s %s/%s", op, nsName, obj.GetName()))
}

func (e *Evaluator) review(ctx context.Context, review interface{}, ns *corev1.Namespace, what string) ([]Violation, error) {
	opts := []reviews.ReviewOpt{
		reviews.EnforcementPoint(util.WebhookEnforcementPoint),
		reviews.Tracing(false),
		reviews.Stats(false),
	}
	if opt := util.NamespaceReviewOpt(ns, logr.Discard()); opt != nil {
		opts = append(opts, opt)
	}

	resp, err := e.client.Review(ctx, review, opts...)
	if err != nil {
		return nil, fmt.Errorf("reviewing %s: %w", what, err)
	}

	var out []Violation
	for _, r := range resp.Results() {
		actions := []string{r.EnforcementAction}
		if r.EnforcementAction == string(util.Scoped) {
			actions = r.ScopedEnforcementActions
		}
		for _, a := range actions {
			out = append(out, Violation{
				Kind:              r.Constraint.GetKind(),
				Constraint:        r.Constraint.GetName(),
				EnforcementAction: a,
				Message:           r.Msg,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Message != b.Message {
			return a.Message < b.Message
		}
		if a.Constraint != b.Constraint {
			return a.Constraint < b.Constraint
		}
		return a.EnforcementAction < b.EnforcementAction
	})
	return out, nil
}

// Denied returns the violations whose enforcement action is "deny", i.e.
// those that would make the webhook reject the request.
func Denied(vs []Violation) []Violation {
	var out []Violation
	for _, v := range vs {
		if v.EnforcementAction == string(util.Deny) {
			out = append(out, v)
		}
	}
	return out
}

// toTemplate converts an unstructured templates.gatekeeper.sh/v1
// ConstraintTemplate into the frameworks' versionless type, applying the CRD
// defaults first (as the API server would), like gator's reader does.
func toTemplate(u *unstructured.Unstructured) (*templates.ConstraintTemplate, error) {
	gvk := u.GroupVersionKind()
	if gvk.Kind != "ConstraintTemplate" || gvk.Version != templatesv1.SchemeGroupVersion.Version {
		return nil, fmt.Errorf("unsupported template type %s (want %s, Kind=ConstraintTemplate)",
			gvk, templatesv1.SchemeGroupVersion)
	}
	b, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	v1 := &templatesv1.ConstraintTemplate{}
	if err := json.Unmarshal(b, v1); err != nil {
		return nil, fmt.Errorf("decoding ConstraintTemplate: %w", err)
	}
	return v1.ToVersionless()
}

// validateOperations mirrors the check in Gatekeeper's template admission
// validation.
func validateOperations(ct *templates.ConstraintTemplate) error {
	for _, t := range ct.Spec.Targets {
		for _, op := range t.Operations {
			if string(op) == "*" && len(t.Operations) > 1 {
				return errors.New("if '*' is present, must not specify other operations")
			}
		}
	}
	return nil
}

// validateEnforcementAction mirrors Gatekeeper's constraint admission
// validation of spec.enforcementAction.
func validateEnforcementAction(c *unstructured.Unstructured) error {
	ea, found, err := unstructured.NestedString(c.Object, "spec", "enforcementAction")
	if err != nil {
		return err
	}
	if !found || ea == "" {
		return nil
	}
	return util.ValidateEnforcementAction(util.EnforcementAction(ea), c.Object)
}

func jsonCopy(u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	b, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out := &unstructured.Unstructured{}
	if err := out.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return out, nil
}

func describe(u *unstructured.Unstructured) string {
	gvk := u.GroupVersionKind()
	kind := gvk.Kind
	if kind == "" {
		kind = "<no kind>"
	}
	return fmt.Sprintf("%s %q (%s)", kind, u.GetName(), gvk.GroupVersion())
}

func buildAdmissionRequest(req Request) (*admissionv1.AdmissionRequest, *corev1.Namespace, error) {
	op := admissionv1.Operation(strings.ToUpper(req.Operation))
	if op == "" {
		op = admissionv1.Create
	}

	obj, old := req.Object, req.OldObject
	var optsKind string
	switch op {
	case admissionv1.Create:
		optsKind = "CreateOptions"
		if obj == nil {
			return nil, nil, errors.New("CREATE requires Object")
		}
	case admissionv1.Update:
		optsKind = "UpdateOptions"
		if obj == nil || old == nil {
			return nil, nil, errors.New("UPDATE requires Object and OldObject")
		}
	case admissionv1.Delete:
		optsKind = "DeleteOptions"
		if old == nil {
			old = obj
		}
		obj = nil
		if old == nil {
			return nil, nil, errors.New("DELETE requires OldObject (or Object)")
		}
	case admissionv1.Connect:
		if obj == nil {
			return nil, nil, errors.New("CONNECT requires Object")
		}
	default:
		return nil, nil, fmt.Errorf("unsupported operation %q", req.Operation)
	}

	primary := obj
	if primary == nil {
		primary = old
	}
	gvk := objectGVK(primary)
	isNamespace := gvk.Group == "" && gvk.Kind == "Namespace"

	nsName := ""
	if !isNamespace {
		nsName = req.Namespace
		if nsName == "" {
			nsName, _, _ = unstructured.NestedString(primary, "metadata", "namespace")
		}
		if nsName == "" {
			nsName = DefaultNamespace
		}
	}
	name, _, _ := unstructured.NestedString(primary, "metadata", "name")

	objRaw, err := encodeObject(obj, gvk, nsName)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding Object: %w", err)
	}
	oldRaw, err := encodeObject(old, gvk, nsName)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding OldObject: %w", err)
	}

	gvr := metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: resourceFor(gvk.Kind)}
	mgvk := metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}
	dryRun := false
	ar := &admissionv1.AdmissionRequest{
		UID:                "00000000-0000-0000-0000-000000000000",
		Kind:               mgvk,
		Resource:           gvr,
		SubResource:        req.SubResource,
		RequestKind:        &mgvk,
		RequestResource:    &gvr,
		RequestSubResource: req.SubResource,
		Name:               name,
		Namespace:          nsName,
		Operation:          op,
		Object:             runtime.RawExtension{Raw: objRaw},
		OldObject:          runtime.RawExtension{Raw: oldRaw},
		DryRun:             &dryRun,
	}
	ar.UserInfo.Username = req.Username
	if optsKind != "" {
		ar.Options = runtime.RawExtension{Raw: []byte(`{"kind":"` + optsKind + `","apiVersion":"meta.k8s.io/v1"}`)}
	}

	var ns *corev1.Namespace
	if nsName != "" {
		ns = namespaceObject(nsName, req.NamespaceLabels)
	}
	return ar, ns, nil
}

// namespaceObject is the Namespace Gatekeeper would read from its cache, with the API server's
// automatic kubernetes.io/metadata.name label.
func namespaceObject(name string, extraLabels map[string]string) *corev1.Namespace {
	labels := map[string]string{corev1.LabelMetadataName: name}
	for k, v := range extraLabels {
		labels[k] = v
	}
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
}

// objectGVK returns the object's GVK, defaulting to v1 Pod.
func objectGVK(obj map[string]interface{}) schema.GroupVersionKind {
	apiVersion, _, _ := unstructured.NestedString(obj, "apiVersion")
	kind, _, _ := unstructured.NestedString(obj, "kind")
	if apiVersion == "" {
		apiVersion = "v1"
	}
	if kind == "" {
		kind = "Pod"
	}
	return schema.FromAPIVersionAndKind(apiVersion, kind)
}

// resourceFor derives the plural resource name (naively for kinds other
// than the common ones).
func resourceFor(kind string) string {
	l := strings.ToLower(kind)
	switch {
	case strings.HasSuffix(l, "s"), strings.HasSuffix(l, "x"):
		return l + "es"
	case strings.HasSuffix(l, "y") && !strings.HasSuffix(l, "ay") && !strings.HasSuffix(l, "ey"):
		return l[:len(l)-1] + "ies"
	default:
		return l + "s"
	}
}

// encodeObject marshals obj to JSON, filling in apiVersion, kind and (for
// namespaced requests) metadata.namespace when absent, as the API server
// does. obj itself is never modified (copy-on-write of the touched maps).
func encodeObject(obj map[string]interface{}, gvk schema.GroupVersionKind, ns string) ([]byte, error) {
	if obj == nil {
		return nil, nil
	}
	out, copied := obj, false
	cow := func() {
		if !copied {
			out, copied = shallowCopy(obj), true
		}
	}
	if s, _ := obj["apiVersion"].(string); s == "" {
		cow()
		out["apiVersion"] = gvk.GroupVersion().String()
	}
	if s, _ := obj["kind"].(string); s == "" {
		cow()
		out["kind"] = gvk.Kind
	}
	if ns != "" {
		if cur, _, _ := unstructured.NestedString(obj, "metadata", "namespace"); cur == "" {
			cow()
			md, _ := obj["metadata"].(map[string]interface{})
			md = shallowCopy(md)
			md["namespace"] = ns
			out["metadata"] = md
		}
	}
	return json.Marshal(out)
}

func shallowCopy(m map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}
