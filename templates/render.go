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
	"sigs.k8s.io/yaml"

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

// The validation every template's CEL code ends in: its `violations` variable lists the
// messages (see lib/psc.cel.yaml).
const (
	celValidation = "size(variables.violations) == 0"
	// Each message once, in order (distinct() needs Kubernetes 1.34; see lib/psc.cel.yaml).
	celMessageExpression = `(size(variables.violations) <= 32 ? variables.smallIndexes : variables.indexes)` +
		`.filter(i, i < size(variables.violations) && variables.violations.indexOf(variables.violations[i]) == i)` +
		`.map(i, variables.violations[i]).join("; ")`
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
	// Feature is the feature the object belongs to; empty for objects that serve every
	// feature (expansion templates).
	Feature string
	Object  *unstructured.Unstructured
}

// Inventory is the desired state: every object to apply, in apply order (templates, then
// constraints, then mutators, then the objects that serve all features).
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

// Find returns the object of a role that belongs to a feature.
func (inv Inventory) Find(role Role, feature string) (*unstructured.Unstructured, bool) {
	for _, it := range inv {
		if it.Role == role && it.Feature == feature {
			return it.Object, true
		}
	}
	return nil, false
}

// Features lists the features with objects in the inventory, in API order.
func (inv Inventory) Features() []string {
	var out []string
	for _, it := range inv {
		if it.Feature != "" && !slices.Contains(out, it.Feature) {
			out = append(out, it.Feature)
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
	if err != nil || spec == nil {
		return nil, err
	}
	var tmpls, cons, mutators Inventory
	for _, ef := range enabled {
		f, block := ef.Feature, ef.block
		tmpl, err := f.Template()
		if err != nil {
			return nil, err
		}
		excluded := excludedNamespaces(spec, block, opts)
		if spec.ValidatingAdmissionPolicyEnabled() {
			if err := setGenerateVAP(tmpl, true); err != nil {
				return nil, fmt.Errorf("template of feature %s: %w", f.Name, err)
			}
		}
		tmpls = append(tmpls, Item{Role: RoleTemplate, Feature: f.Name, Object: tmpl})
		cons = append(cons, Item{Role: RoleConstraint, Feature: f.Name, Object: renderConstraint(f, spec, block, excluded)})
		ms, err := renderMutators(f, spec, block, excluded)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			mutators = append(mutators, Item{Role: RoleMutator, Feature: f.Name, Object: m})
		}
	}
	inv := append(append(tmpls, cons...), mutators...)
	// Expansion templates only matter while some constraint can judge the generated Pods.
	if len(cons) > 0 && spec.WorkloadsEnabled() {
		for _, w := range WorkloadKinds(spec) {
			inv = append(inv, Item{Role: RoleExpansion, Object: renderExpansion(w, spec)})
		}
	}
	return inv, nil
}

// Template returns the feature's embedded ConstraintTemplate, labelled.
func (f Feature) Template() (*unstructured.Unstructured, error) {
	data, err := policies.ReadFile(f.Name + "/template.yaml")
	if err != nil {
		return nil, fmt.Errorf("reading template of feature %s: %w", f.Name, err)
	}
	obj := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("parsing template of feature %s: %w", f.Name, err)
	}
	u := &unstructured.Unstructured{Object: obj}
	if u.GroupVersionKind() != TemplateGVK || u.GetName() != f.TemplateName() {
		return nil, fmt.Errorf("template of feature %s must be a %s named %s, found %s %q",
			f.Name, TemplateGVK.Kind, f.TemplateName(), u.GroupVersionKind(), u.GetName())
	}
	if err := addCELLibrary(u); err != nil {
		return nil, fmt.Errorf("template of feature %s: %w", f.Name, err)
	}
	if err := addLibrary(u); err != nil {
		return nil, fmt.Errorf("template of feature %s: %w", f.Name, err)
	}
	u.SetLabels(f.labels())
	return u, nil
}

// addLibrary adds the shared Rego library (package lib.psc) to the Rego source of every
// target, so that each policy folder holds only the feature's own rules.
func addLibrary(u *unstructured.Unstructured) error {
	lib, err := policies.ReadFile("lib/psc.rego")
	if err != nil {
		return fmt.Errorf("reading shared library: %w", err)
	}
	return eachTarget(u, func(i int, target map[string]interface{}) error {
		code, _, _ := unstructured.NestedSlice(target, "code")
		found := false
		for j, c := range code {
			entry, ok := c.(map[string]interface{})
			if !ok || entry["engine"] != "Rego" {
				continue
			}
			libs, _, _ := unstructured.NestedSlice(entry, "source", "libs")
			if err := unstructured.SetNestedSlice(entry, append(libs, string(lib)), "source", "libs"); err != nil {
				return fmt.Errorf("spec.targets[%d].code[%d]: %w", i, j, err)
			}
			code[j], found = entry, true
		}
		if !found {
			return fmt.Errorf("spec.targets[%d] has no code entry with engine Rego", i)
		}
		target["code"] = code
		return nil
	})
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

// addCELLibrary completes the K8sNativeValidation source of every target: the shared
// variables of lib/psc.cel.yaml before the template's own, the one validation (no
// violations), failurePolicy and generateVAP. The CEL entry is moved first among the code
// entries, the order in which Gatekeeper prefers the engines.
func addCELLibrary(u *unstructured.Unstructured) error {
	data, err := policies.ReadFile("lib/psc.cel.yaml")
	if err != nil {
		return fmt.Errorf("reading shared CEL library: %w", err)
	}
	var lib celLibrary
	if err := yaml.UnmarshalStrict(data, &lib); err != nil {
		return fmt.Errorf("parsing shared CEL library: %w", err)
	}
	return eachTarget(u, func(i int, target map[string]interface{}) error {
		code, _, _ := unstructured.NestedSlice(target, "code")
		var cel, others []interface{}
		for _, c := range code {
			if entry, ok := c.(map[string]interface{}); ok && entry["engine"] == EngineCEL {
				cel = append(cel, entry)
			} else {
				others = append(others, c)
			}
		}
		if len(cel) != 1 {
			return fmt.Errorf("spec.targets[%d] needs exactly one code entry with engine %s, found %d", i, EngineCEL, len(cel))
		}
		entry, _ := cel[0].(map[string]interface{})
		own, _, err := unstructured.NestedSlice(entry, "source", "variables")
		if err != nil {
			return fmt.Errorf("spec.targets[%d]: %s variables: %w", i, EngineCEL, err)
		}
		if last, ok := lastItem(own).(map[string]interface{}); !ok || last["name"] != "violations" {
			return fmt.Errorf("spec.targets[%d]: the %s variables must end with one named violations", i, EngineCEL)
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(entry, "source", "validations"); found {
			return fmt.Errorf("spec.targets[%d]: %s validations are added by the renderer", i, EngineCEL)
		}
		vars := make([]interface{}, 0, len(lib.Variables)+len(own))
		for _, v := range lib.Variables {
			vars = append(vars, map[string]interface{}{"name": v["name"], "expression": v["expression"]})
		}
		vars = append(vars, own...)
		source := map[string]interface{}{
			"variables": vars,
			"validations": []interface{}{map[string]interface{}{
				"expression":        celValidation,
				"messageExpression": celMessageExpression,
			}},
			"failurePolicy": celFailurePolicy,
			"generateVAP":   generateVAP,
		}
		entry["source"] = source
		target["code"] = append(cel, others...)
		return nil
	})
}

func lastItem(items []interface{}) interface{} {
	if len(items) == 0 {
		return nil
	}
	return items[len(items)-1]
}

func (f Feature) labels() map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue, LabelFeature: f.Name}
}

// setGenerateVAP sets generateVAP in the K8sNativeValidation source of every target.
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

// PolicyName is the ValidatingAdmissionPolicy Gatekeeper generates from a feature's template.
func (f Feature) PolicyName() string { return "gatekeeper-" + f.TemplateName() }

// BindingName is the ValidatingAdmissionPolicyBinding Gatekeeper generates for a feature's
// constraint (gatekeeper-<kind>-<name>, lower case; ours are far below the length limit at
// which Gatekeeper would shorten it).
func (f Feature) BindingName() string {
	return "gatekeeper-" + strings.ToLower(f.ConstraintKind()) + "-" + f.ConstraintName()
}

func renderConstraint(f Feature, spec *v1alpha1.PodSecurityConstraintsSpec, block map[string]interface{}, excluded []string) *unstructured.Unstructured {
	action := string(spec.EnforcementAction)
	if a, ok := block["enforcementAction"].(string); ok && a != "" {
		action = a
	}
	if action == "" {
		action = string(v1alpha1.EnforcementDeny)
	}

	params := map[string]interface{}{}
	for k, v := range block {
		if !slices.Contains(commonKeys, k) {
			params[k] = v
		}
	}
	if f.ContainerLevel {
		params["exemptImages"] = toInterfaces(featureExemptImages(f, spec, block))
	}

	specMap := map[string]interface{}{
		"enforcementAction":        "scoped",
		"scopedEnforcementActions": scopedEnforcementActions(action, spec.ValidatingAdmissionPolicyEnabled()),
		"match": map[string]interface{}{
			"kinds": []interface{}{map[string]interface{}{
				"apiGroups": []interface{}{""},
				"kinds":     []interface{}{"Pod"},
			}},
			"excludedNamespaces": toInterfaces(excluded),
		},
		"parameters": params,
	}
	u := &unstructured.Unstructured{Object: map[string]interface{}{"spec": specMap}}
	u.SetGroupVersionKind(ConstraintGroupVersion.WithKind(f.ConstraintKind()))
	u.SetName(f.ConstraintName())
	u.SetLabels(f.labels())
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
	exempt := []string{}
	for _, img := range spec.ExemptImages {
		exempt = append(exempt, string(img))
	}
	return dedupe(append(exempt, stringList(block["exemptImages"])...))
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
