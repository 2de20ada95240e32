package templates

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/profiles"
)

// Labels on every generated object. The operator prunes by LabelManagedBy and never touches
// objects without it.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "psc-operator"
	LabelFeature   = "policy.podsecurity.dev/feature"
)

// Gatekeeper API versions the operator writes.
var (
	TemplateGVK = schema.GroupVersionKind{Group: "templates.gatekeeper.sh", Version: "v1", Kind: "ConstraintTemplate"}
	// ConstraintGroupVersion is the group and version of every constraint kind.
	ConstraintGroupVersion = schema.GroupVersion{Group: "constraints.gatekeeper.sh", Version: "v1beta1"}
)

// Keys of a feature block that configure the constraint or the feature's mutators rather than
// the constraint's parameters.
var commonKeys = []string{"enabled", "enforcementAction", "excludedNamespaces", "exemptImages", "setDefaults"}

//go:embed */template.yaml */defaults.yaml lib/psc.rego lib/psc.cel.yaml
var policies embed.FS

// Engine names of a template's code entries.
const (
	EngineCEL  = "K8sNativeValidation"
	EngineRego = "Rego"
)

// Settings of every template's K8sNativeValidation source, set here only, so that the
// behaviour never depends on Gatekeeper's flag defaults.
var (
	// celFailurePolicy: an expression that fails to evaluate denies the request. Our
	// expressions guard every optional field, so an error means something unforeseen, and a
	// policy never admits a pod because it could not judge it.
	celFailurePolicy = "Fail"
	// generateVAP: a ValidatingAdmissionPolicy is generated from our templates only with
	// spec.validatingAdmissionPolicy.enabled (Render sets it then); otherwise Gatekeeper's webhook
	// (and audit) enforce them alone. Gatekeeper v3.23 defaults to generating one.
	generateVAP = false
)

// Gatekeeper's enforcement points, named in a constraint's scopedEnforcementActions.
const (
	EnforcementPointWebhook = "validation.gatekeeper.sh"
	EnforcementPointAudit   = "audit.gatekeeper.sh"
	EnforcementPointGator   = "gator.gatekeeper.sh"
	// EnforcementPointVAP is the API server's ValidatingAdmissionPolicy: a constraint that names
	// it gets a binding from Gatekeeper, whatever --default-create-vap-binding-for-constraints says.
	EnforcementPointVAP = "vap.k8s.io"
)

// KubeSystemNamespace is excluded from every feature while the API server enforces them
// (spec.validatingAdmissionPolicy): a policy in the API server keeps working when Gatekeeper
// is down, so it must never be able to lock out the control plane's own pods.
const KubeSystemNamespace = "kube-system"

// The validation of each feature in the policy template tests its `violating` variable; its
// message is made of its `violations` variable, the list of its messages (see lib/psc.cel.yaml
// and policy.go).
//
// Gatekeeper's CEL driver (the API server's validator) evaluates every messageExpression, also
// of validations that passed, in a second activation, and every reference to variables.<name>
// is a lookup in a lazy map that unescapes the name with a regular expression. So the message
// is "" without a violation (one lookup), and the list is bound once
// ([list].map(vs, ...)[0]) instead of being looked up in every step of the comprehension.
// The API server drops a message longer than 5 KiB (5,120 bytes) and falls back to the
// validation's static message, so a feature's messages are cut before that: when all of
// them joined (repeats included, an upper bound) are longer than celMessageLimit bytes, the
// message keeps the whole messages that fit in celMessageCut bytes (a quarter of that many
// characters when the text is not ASCII: a character is at most 4 bytes) and ends with one
// that says how many there are in all. The check costs a native join and no comprehension,
// so the usual short message pays nearly nothing for it.
const (
	celMessageLimit = 5000
	celMessageCut   = 4800
	// celMessageCutChars is celMessageCut in characters of up to 4 bytes.
	celMessageCutChars = celMessageCut / 4
)

const (
	// Each message once, in order (distinct() needs Kubernetes 1.34; see lib/psc.cel.yaml).
	// Messages are nearly always distinct already: that is checked with the native indexOf and
	// lastIndexOf, and the positions idiom (an interpreted loop over 32 positions, the larger
	// part of a message's cost) runs only when a message repeats. Both are quadratic in the
	// number of messages, and Gatekeeper gives the validations and all the messages of a
	// review one runtime cost budget (celconfig.PerCallLimit, 1,000,000): when it runs out, the
	// API server's validator replaces every result of the template, violated or not, with
	// "failed messageExpression: … running out of cost budget". Checking every feature's
	// messages without a bound exhausted it on a pod of 66 containers that violate every
	// feature. So a feature with more than 32 messages (32 containers or more violating it:
	// such a message is mostly cut anyway) is not deduplicated; a message then repeats only
	// where the pod repeats a value (capabilities.add: [X, X]). TestLargePodsStayWithinCostBudget
	// holds the bound.
	celDistinct = `(size(vs) > 32 || vs.all(m, vs.indexOf(m) == vs.lastIndexOf(m)) ? vs : ` +
		`variables.smallIndexes` +
		`.filter(i, i < size(vs) && vs.indexOf(vs[i]) == i)` +
		`.map(i, vs[i]))`
	// celMessageExpression is a validation's messageExpression; FEATURE, LIMIT, CUT and CHARS are
	// replaced by the feature's name and the three sizes above.
	celMessageExpression = `size(variables.violations) == 0 ? "" : [variables.violations].map(vs, ` +
		`size(bytes(vs.join("; "))) <= LIMIT ? ` + celDistinct + `.join("; ") : ` +
		`[` + celDistinct + `].map(ds, [ds.join("; ")].map(j, size(bytes(j)) <= LIMIT ? j : ` +
		`[size(j) == size(bytes(j)) ? j.substring(0, CUT) : j.substring(0, CHARS)].map(t, ` +
		`(t.lastIndexOf("; ") > 0 ? t.substring(0, t.lastIndexOf("; ")) : t) + ` +
		`"; psc/FEATURE: " + string(size(ds)) + " violations in all, the rest are not listed (the API server takes messages of up to 5 KiB)")[0])[0])[0])[0]`
	// celStaticMessage is the validation's message, which the API server uses only when the
	// messageExpression has no usable result (an evaluation error, a result it refuses: longer
	// than 5 KiB, a line break): never "failed expression". (Running out of the cost budget is
	// different: see celDistinct.)
	celStaticMessage = "psc/FEATURE: the pod violates this feature (the message that lists its violations could not be built: see the README, \"Why was my pod denied?\")"
)

// Options are the cluster facts the spec does not hold.
type Options struct {
	// OperatorNamespace and GatekeeperNamespace are always excluded, so that neither can be
	// locked out by its own policies.
	OperatorNamespace   string
	GatekeeperNamespace string
	// ProbeNamespace is the admission probe's namespace. It is excluded from every feature while
	// the API server enforces them (spec.validatingAdmissionPolicy), so that the probe pod is
	// judged by Gatekeeper's webhook alone and tells whether that path works.
	ProbeNamespace string
}

// DefaultOptions are the namespaces of a standard installation.
func DefaultOptions() Options {
	return Options{OperatorNamespace: "psc-system", GatekeeperNamespace: "gatekeeper-system", ProbeNamespace: "psc-probe"}
}

// Role is what a rendered object does.
type Role string

// Roles, in the order objects of each role are applied. Pruning goes in reverse.
const (
	// RoleTemplate is a feature's ConstraintTemplate.
	RoleTemplate Role = "template"
	// RoleConstraint is a feature's constraint; it needs its template's CRD.
	RoleConstraint Role = "constraint"
	// RoleMutator is a Gatekeeper mutator (Assign, ModifySet) that fills in what a feature
	// requires where a pod leaves it unset (setDefaults). Applied before the expansion
	// templates, so that a workload is judged as its completed Pod.
	RoleMutator Role = "mutator"
	// RoleExpansion is an ExpansionTemplate: it makes Gatekeeper judge a workload kind as the
	// Pod it would create, for every feature at once.
	RoleExpansion Role = "expansion"
)

// Item is one object the operator applies.
type Item struct {
	Role Role
	// Feature is the feature a mutator belongs to.
	Feature string
	// Features are the features the policy template or a constraint serves, in API order: for
	// the template every enabled feature, for a constraint those it enforces.
	Features []string
	Object   *unstructured.Unstructured
}

// serves reports whether the item belongs to or serves a feature.
func (it Item) serves(feature string) bool {
	return it.Feature == feature || slices.Contains(it.Features, feature)
}

// Inventory is the desired state: every object to apply, in apply order (the policy template,
// then its constraints, then mutators, then the objects that serve all features).
type Inventory []Item

// Objects returns the objects of the given roles (of every role when none is given), in
// apply order.
func (inv Inventory) Objects(roles ...Role) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, it := range inv {
		if len(roles) == 0 || slices.Contains(roles, it.Role) {
			out = append(out, it.Object)
		}
	}
	return out
}

// Items returns the items of a role, in apply order.
func (inv Inventory) Items(role Role) []Item {
	var out []Item
	for _, it := range inv {
		if it.Role == role {
			out = append(out, it)
		}
	}
	return out
}

// Find returns the object of a role that belongs to or serves a feature: the policy template
// (for an enabled feature), the constraint that enforces the feature, or its first mutator.
func (inv Inventory) Find(role Role, feature string) (*unstructured.Unstructured, bool) {
	for _, it := range inv {
		if it.Role == role && it.serves(feature) {
			return it.Object, true
		}
	}
	return nil, false
}

// Features lists the features with objects in the inventory, in API order.
func (inv Inventory) Features() []string {
	var out []string
	for _, f := range Features() {
		for _, it := range inv {
			if it.serves(f.Name) {
				out = append(out, f.Name)
				break
			}
		}
	}
	return out
}

// Render turns a spec into the objects for its enabled features, in apply order, after
// filling in the features of its profile (profiles.EffectiveSpec). The spec is expected to be
// defaulted and valid; Render only fails on a broken embedded template or a profile version
// the API would reject.
func Render(spec *v1alpha1.PodSecurityConstraintsSpec, opts Options) (Inventory, error) {
	spec, enabled, err := enabledFeatures(spec)
	if err != nil || spec == nil || len(enabled) == 0 {
		return nil, err
	}
	tmpl, err := PolicyTemplate()
	if err != nil {
		return nil, err
	}
	if spec.ValidatingAdmissionPolicyEnabled() {
		if err := setGenerateVAP(tmpl, true); err != nil {
			return nil, fmt.Errorf("policy template: %w", err)
		}
	}
	var names []string
	for _, ef := range enabled {
		names = append(names, ef.Name)
	}
	inv := Inventory{{Role: RoleTemplate, Features: names, Object: tmpl}}
	for _, g := range constraintGroups(spec, enabled, opts) {
		inv = append(inv, Item{Role: RoleConstraint, Features: g.features, Object: renderConstraint(spec, g)})
	}
	for _, ef := range enabled {
		ms, err := renderMutators(ef.Feature, spec, ef.block, excludedNamespaces(spec, ef.block, opts))
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			inv = append(inv, Item{Role: RoleMutator, Feature: ef.Name, Object: m})
		}
	}
	// Expansion templates only matter while some constraint can judge the generated Pods.
	if spec.WorkloadsEnabled() {
		for _, w := range WorkloadKinds(spec) {
			inv = append(inv, Item{Role: RoleExpansion, Object: renderExpansion(w, spec)})
		}
	}
	return inv, nil
}

// constraintGroup is one constraint: the features it enforces, with one action and one match.
type constraintGroup struct {
	name     string
	action   string
	excluded []string
	features []string
	params   map[string]interface{}
}

// ConstraintName is the constraint of the features with an enforcement action and no
// excludedNamespaces of their own: psc-deny, psc-warn or psc-dryrun. A feature with its own
// excludedNamespaces has a constraint of its own, named after it (Feature.ObjectName).
func ConstraintName(action string) string { return "psc-" + action }

// constraintGroups puts the enabled features into constraints: one per enforcement action, and
// one for each feature with its own excludedNamespaces; in API order of their first feature.
func constraintGroups(spec *v1alpha1.PodSecurityConstraintsSpec, enabled []enabledFeature, opts Options) []*constraintGroup {
	var groups []*constraintGroup
	for _, ef := range enabled {
		action := featureAction(spec, ef.block)
		name := ConstraintName(action)
		if len(stringList(ef.block["excludedNamespaces"])) > 0 {
			name = ef.ObjectName()
		}
		i := slices.IndexFunc(groups, func(g *constraintGroup) bool { return g.name == name })
		if i < 0 {
			groups = append(groups, &constraintGroup{name: name, action: action, excluded: excludedNamespaces(spec, ef.block, opts), params: map[string]interface{}{}})
			i = len(groups) - 1
		}
		g := groups[i]
		g.features = append(g.features, ef.Name)
		g.params[ef.Name] = featureParameters(ef.Feature, spec, ef.block)
	}
	return groups
}

// featureAction is a feature's enforcement action: its own, else the spec's, else deny.
func featureAction(spec *v1alpha1.PodSecurityConstraintsSpec, block map[string]interface{}) string {
	if a, ok := block["enforcementAction"].(string); ok && a != "" {
		return a
	}
	if spec.EnforcementAction != "" {
		return string(spec.EnforcementAction)
	}
	return string(v1alpha1.EnforcementDeny)
}

// featureParameters are a feature's entry in its constraint's parameters.features: what the
// user wrote under the feature, but for the keys that configure the constraint, and for a
// container-level feature with exemptImages of its own, the images it exempts (spec.exemptImages
// and its own); the others use the constraint's exemptImages (spec.exemptImages).
func featureParameters(f Feature, spec *v1alpha1.PodSecurityConstraintsSpec, block map[string]interface{}) map[string]interface{} {
	params := map[string]interface{}{}
	for k, v := range block {
		if !slices.Contains(commonKeys, k) {
			params[k] = sortedStrings(v)
		}
	}
	if f.ContainerLevel && len(stringList(block["exemptImages"])) > 0 {
		params["exemptImages"] = toInterfaces(featureExemptImages(f, spec, block))
	}
	return params
}

// eachTarget calls fn with each object of the template's spec.targets, which fn may change in
// place, and writes the targets back.
func eachTarget(u *unstructured.Unstructured, fn func(i int, target map[string]interface{}) error) error {
	targets, _, err := unstructured.NestedSlice(u.Object, "spec", "targets")
	if err != nil || len(targets) == 0 {
		return fmt.Errorf("spec.targets is missing or malformed")
	}
	for i, t := range targets {
		target, ok := t.(map[string]interface{})
		if !ok {
			return fmt.Errorf("spec.targets[%d] is not an object", i)
		}
		if err := fn(i, target); err != nil {
			return err
		}
		targets[i] = target
	}
	return unstructured.SetNestedSlice(u.Object, targets, "spec", "targets")
}

// celLibrary is lib/psc.cel.yaml: the variables every template's CEL code may use.
type celLibrary struct {
	Variables []map[string]interface{} `json:"variables"`
}

// setGenerateVAP sets generateVAP in the K8sNativeValidation source of every target; with it,
// the source loses its match condition (see gateName).
func setGenerateVAP(u *unstructured.Unstructured, generate bool) error {
	return eachTarget(u, func(i int, target map[string]interface{}) error {
		code, _, _ := unstructured.NestedSlice(target, "code")
		for j, c := range code {
			entry, ok := c.(map[string]interface{})
			if !ok || entry["engine"] != EngineCEL {
				continue
			}
			if err := unstructured.SetNestedField(entry, generate, "source", "generateVAP"); err != nil {
				return fmt.Errorf("spec.targets[%d].code[%d]: %w", i, j, err)
			}
			if generate {
				// A ValidatingAdmissionPolicy's match conditions cannot read variables.
				unstructured.RemoveNestedField(entry, "source", "matchCondition")
			}
			code[j] = entry
		}
		target["code"] = code
		return nil
	})
}

// excludedNamespaces are the namespaces a feature's constraint and mutators skip: the spec's,
// the feature's, and the operator's and Gatekeeper's own; while the API server enforces the
// features, also kube-system and the probe's namespace. Gatekeeper carries the constraint's
// exclusions into the generated ValidatingAdmissionPolicy (a match condition on
// params.spec.match.excludedNamespaces), so they hold on that path too.
func excludedNamespaces(spec *v1alpha1.PodSecurityConstraintsSpec, block map[string]interface{}, opts Options) []string {
	excluded := []string{}
	for _, ns := range spec.ExcludedNamespaces {
		excluded = append(excluded, string(ns))
	}
	excluded = append(excluded, stringList(block["excludedNamespaces"])...)
	excluded = append(excluded, opts.OperatorNamespace, opts.GatekeeperNamespace)
	if spec.ValidatingAdmissionPolicyEnabled() {
		excluded = append(excluded, KubeSystemNamespace, opts.ProbeNamespace)
	}
	return dedupe(excluded)
}

// VAPBinds reports whether a feature with the given action is bound to its
// ValidatingAdmissionPolicy: deny (Deny) and dryrun (Audit) are; warn stays with the webhook
// alone, since a warning from both would reach the client twice.
func VAPBinds(action string) bool {
	return action == string(v1alpha1.EnforcementDeny) || action == string(v1alpha1.EnforcementDryRun)
}

// scopedEnforcementActions are a constraint's actions per enforcement point. Every constraint
// names its points, so that Gatekeeper's --default-create-vap-binding-for-constraints (true by
// default in v3.23) never applies to it: with that default and an unscoped constraint whose
// template does not generate a policy, Gatekeeper reports "cannot generate
// ValidatingAdmissionPolicyBinding" as a constraint error. The webhook, audit and gator keep
// every action (the webhook also judges workloads through expansion, which a policy in the API
// server cannot); while the API server enforces the features (vap), its policy is bound too,
// for deny and dryrun. For a pod the API server evaluates its policies before any webhook and
// stops at the first denial, so a denied pod gets one message.
func scopedEnforcementActions(action string, vap bool) []interface{} {
	points := []string{EnforcementPointWebhook, EnforcementPointAudit, EnforcementPointGator}
	if vap && VAPBinds(action) {
		points = append(points, EnforcementPointVAP)
	}
	eps := make([]interface{}, 0, len(points))
	for _, p := range points {
		eps = append(eps, map[string]interface{}{"name": p})
	}
	return []interface{}{map[string]interface{}{"action": action, "enforcementPoints": eps}}
}

// ConstraintAction is a rendered or live constraint's action: spec.enforcementAction, or for
// a scoped constraint the action of its scopedEnforcementActions (the renderer writes one).
func ConstraintAction(u *unstructured.Unstructured) string {
	action, _, _ := unstructured.NestedString(u.Object, "spec", "enforcementAction")
	if action != "scoped" {
		return action
	}
	scoped, _, _ := unstructured.NestedSlice(u.Object, "spec", "scopedEnforcementActions")
	for _, s := range scoped {
		if m, ok := s.(map[string]interface{}); ok {
			if a, ok := m["action"].(string); ok {
				return a
			}
		}
	}
	return action
}

// BindsVAP reports whether a constraint names the API server's enforcement point.
func BindsVAP(u *unstructured.Unstructured) bool {
	scoped, _, _ := unstructured.NestedSlice(u.Object, "spec", "scopedEnforcementActions")
	for _, s := range scoped {
		m, _ := s.(map[string]interface{})
		eps, _ := m["enforcementPoints"].([]interface{})
		for _, ep := range eps {
			if p, _ := ep.(map[string]interface{}); p["name"] == EnforcementPointVAP || p["name"] == "*" {
				return true
			}
		}
	}
	return false
}

func renderConstraint(spec *v1alpha1.PodSecurityConstraintsSpec, g *constraintGroup) *unstructured.Unstructured {
	specMap := map[string]interface{}{
		"enforcementAction":        "scoped",
		"scopedEnforcementActions": scopedEnforcementActions(g.action, spec.ValidatingAdmissionPolicyEnabled()),
		"match": map[string]interface{}{
			"kinds": []interface{}{map[string]interface{}{
				"apiGroups": []interface{}{""},
				"kinds":     []interface{}{"Pod"},
			}},
			"excludedNamespaces": toInterfaces(g.excluded),
		},
		"parameters": map[string]interface{}{
			"exemptImages": toInterfaces(specExemptImages(spec)),
			"features":     g.params,
		},
	}
	u := &unstructured.Unstructured{Object: map[string]interface{}{"spec": specMap}}
	u.SetGroupVersionKind(ConstraintGroupVersion.WithKind(PolicyKind))
	u.SetName(g.name)
	u.SetLabels(map[string]string{LabelManagedBy: ManagedByValue, LabelComponent: ComponentPolicy})
	return u
}

// enabledFeature is a feature the spec switches on, with its block of the spec.
type enabledFeature struct {
	Feature
	block map[string]interface{}
}

// enabledFeatures fills in the features of the spec's profile (profiles.EffectiveSpec) and
// returns that spec with its enabled features in registry order; a nil spec when the master
// switch is off.
func enabledFeatures(spec *v1alpha1.PodSecurityConstraintsSpec) (*v1alpha1.PodSecurityConstraintsSpec, []enabledFeature, error) {
	if !spec.MasterEnabled() {
		return nil, nil, nil
	}
	spec, err := profiles.EffectiveSpec(spec)
	if err != nil {
		return nil, nil, err
	}
	blocks, err := featureBlocks(spec)
	if err != nil {
		return nil, nil, err
	}
	var out []enabledFeature
	for _, f := range Features() {
		if block, ok := blocks[f.Name].(map[string]interface{}); ok && block["enabled"] == true {
			out = append(out, enabledFeature{Feature: f, block: block})
		}
	}
	return spec, out, nil
}

// featureExemptImages is a container-level feature's exemptImages parameter: spec.exemptImages,
// then its own, without duplicates (never nil).
func featureExemptImages(f Feature, spec *v1alpha1.PodSecurityConstraintsSpec, block map[string]interface{}) []string {
	if !f.ContainerLevel {
		return nil
	}
	return dedupe(append(specExemptImages(spec), stringList(block["exemptImages"])...))
}

// specExemptImages is spec.exemptImages without duplicates (never nil): the constraints'
// exemptImages parameter, and the start of a feature's own list.
func specExemptImages(spec *v1alpha1.PodSecurityConstraintsSpec) []string {
	exempt := []string{}
	for _, img := range spec.ExemptImages {
		exempt = append(exempt, string(img))
	}
	return dedupe(exempt)
}

// featureBlocks gives each feature's block of the spec in its JSON form, keyed by the feature
// name, so that a feature's parameters are exactly what the user wrote under its field.
func featureBlocks(spec *v1alpha1.PodSecurityConstraintsSpec) (map[string]interface{}, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encoding spec: %w", err)
	}
	blocks := map[string]interface{}{}
	// utiljson keeps whole numbers as int64, as the API machinery expects.
	if err := utiljson.Unmarshal(data, &blocks); err != nil {
		return nil, fmt.Errorf("decoding spec: %w", err)
	}
	return blocks, nil
}

// sortedStrings returns a list of strings sorted (a copy), anything else as it is. No list of
// strings in a feature's parameters has a meaning in its order, and the policies print allowed
// values sorted: in sorted order they skip sorting them per review (see the fast path in the
// templates' sort idiom, lib/psc.cel.yaml).
func sortedStrings(v interface{}) interface{} {
	items, ok := v.([]interface{})
	if !ok {
		return v
	}
	strs := make([]string, 0, len(items))
	for _, item := range items {
		s, ok := item.(string)
		if !ok {
			return v
		}
		strs = append(strs, s)
	}
	slices.Sort(strs)
	return toInterfaces(strs)
}

func stringList(v interface{}) []string {
	items, _ := v.([]interface{})
	out := make([]string, 0, len(items))
	for _, item := range items {
		if s, ok := item.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// dedupe drops empty and repeated entries, keeping the first occurrence's position.
func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func toInterfaces(in []string) []interface{} {
	out := make([]interface{}, len(in))
	for i, s := range in {
		out[i] = s
	}
	return out
}

// MarshalYAMLStream writes objects as a multi-document YAML stream with sorted keys, so the
// same input always gives the same bytes. Multi-line strings (the Rego) are written as
// literal blocks, so that the output reads like the policy files.
func MarshalYAMLStream(objs []*unstructured.Unstructured) ([]byte, error) {
	var buf bytes.Buffer
	for _, o := range objs {
		var node yamlv3.Node
		if err := node.Encode(o.Object); err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		useLiteralBlocks(&node)
		buf.WriteString("---\n")
		enc := yamlv3.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(&node); err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return buf.Bytes(), nil
}

func useLiteralBlocks(n *yamlv3.Node) {
	if n.Kind == yamlv3.ScalarNode && n.Tag == "!!str" && strings.Contains(n.Value, "\n") {
		n.Style = yamlv3.LiteralStyle
	}
	for _, c := range n.Content {
		useLiteralBlocks(c)
	}
}
