package templates

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// Mutator kinds the operator writes for spec.setDefaults. Their plurals are the singular
// words (assign, modifyset).
var (
	MutationGroupVersion = schema.GroupVersion{Group: "mutations.gatekeeper.sh", Version: "v1"}
	AssignGVK            = MutationGroupVersion.WithKind("Assign")
	ModifySetGVK         = MutationGroupVersion.WithKind("ModifySet")
)

// The CRDs that serve the mutator kinds; Gatekeeper installs them with mutation enabled.
const (
	AssignCRDName    = "assign.mutations.gatekeeper.sh"
	ModifySetCRDName = "modifyset.mutations.gatekeeper.sh"
)

// Where Gatekeeper runs a mutator. A pod is defaulted once, when it is created: the API server
// rejects a change of a stored pod's spec, so a mutator that ran on UPDATE would block every
// later update (labels, finalizers) of a pod created without the field. A workload judged as
// the Pod it would create (ExpansionTemplate) and audit run mutators with no operation, which
// only mutators for every operation match; that pod is never stored, so the expansion
// variant may run on any operation.
type mutatorVariant struct {
	suffix     string
	source     string
	operations []interface{}
}

var mutatorVariants = []mutatorVariant{
	{suffix: "", source: "Original", operations: []interface{}{"CREATE"}},
	{suffix: "-generated", source: "Generated"},
}

// containerLists are the pod fields whose containers get container-level defaults.
//
// Not ephemeralContainers. They are only ever added to a stored pod, by an UPDATE of the
// pods/ephemeralcontainers subresource, and a mutator cannot default only the one being added:
//   - Gatekeeper's mutation webhook gets that request as an UPDATE of kind Pod with the whole
//     pod, exactly like an UPDATE of the pod itself: neither applyTo nor match can tell the
//     subresource apart (no subresource field, v3.23);
//   - its location "spec.ephemeralContainers[name:*]" selects every ephemeral container, also
//     those added earlier without the field (before setDefaults, in an excluded namespace,
//     exempt, under warn or dryrun), and no path test can tell new from old;
//   - the API server rejects any change to an existing ephemeral container on the subresource
//     ("existing ephemeral containers ... may not be changed") and any change to
//     spec.ephemeralContainers on a pod UPDATE ("pod updates may not change fields other
//     than ..."), so such a mutator would block every later kubectl debug, label change and
//     finalizer removal (a pod stuck terminating) of those pods.
//
// PodSecurityPolicy never mutated them either (it mutated on CREATE only and skipped every
// subresource). They are validated: see the library's checked rules.
var containerLists = []struct{ field, suffix string }{
	{field: "containers", suffix: ""},
	{field: "initContainers", suffix: "-init"},
}

// defaultRule is one entry of a feature's defaults.yaml.
type defaultRule struct {
	// Name is unique within the feature and becomes part of the mutators' names.
	Name string `json:"name"`
	// Kind is Assign (the default: set the value where the field is unset) or ModifySet (add
	// the values missing from a list).
	Kind string `json:"kind,omitempty"`
	// Containers makes Location relative to each container of the pod; otherwise it is a
	// path in the pod.
	Containers bool   `json:"containers,omitempty"`
	Location   string `json:"location"`
	// Value is assigned by an Assign rule.
	Value interface{} `json:"value,omitempty"`
	// Values are merged into the list by a ModifySet rule.
	Values []interface{} `json:"values,omitempty"`
}

// HasDefaults reports whether the feature has fields to default (a defaults.yaml in its
// folder). Only these features accept setDefaults.
func (f Feature) HasDefaults() bool {
	_, err := fs.Stat(policies, f.Name+"/defaults.yaml")
	return err == nil
}

// defaultsDecision says whether a feature's mutators are rendered.
type defaultsDecision struct {
	On bool
	// Withheld explains why the defaults spec.setDefaults asks for are not rendered.
	Withheld string
}

// decideDefaults resolves the feature's setDefaults against spec.setDefaults.
//
// A Gatekeeper mutator cannot skip a container by its image: its location selects list items
// by one key with an exact value or "*", and its path tests only look at its own location.
// Defaults would therefore change the containers of exempt images too (container-level
// fields) or their effective values (pod-level fields, which containers inherit). So a feature
// with exemptImages (its own or spec.exemptImages) gets defaults only when its own
// setDefaults is true; following spec.setDefaults alone, they are withheld and the status
// says why.
func decideDefaults(f Feature, spec *v1alpha1.PodSecurityConstraintsSpec, block map[string]interface{}) (defaultsDecision, []defaultRule, error) {
	if !f.HasDefaults() {
		return defaultsDecision{}, nil, nil
	}
	on := spec.SetDefaults != nil && *spec.SetDefaults
	own, explicit := block["setDefaults"].(bool)
	if explicit {
		on = own
	}
	if !on {
		return defaultsDecision{}, nil, nil
	}
	rules, err := f.defaultRules(block)
	if err != nil || len(rules) == 0 {
		return defaultsDecision{}, nil, err
	}
	if exempt := featureExemptImages(f, spec, block); !explicit && len(exempt) > 0 {
		return defaultsDecision{Withheld: fmt.Sprintf("the feature exempts images (%s) and a Gatekeeper mutator cannot leave "+
			"a container out by its image; set %s.setDefaults: true to default every container, those images included, "+
			"or false to only check", strings.Join(exempt, ", "), f.Name)}, nil, nil
	}
	return defaultsDecision{On: true}, rules, nil
}

// WithheldDefaults gives, for each enabled feature whose defaults spec.setDefaults asks for
// but Render withholds, the reason (see decideDefaults). The spec is expected to be defaulted
// and valid, as for Render.
func WithheldDefaults(spec *v1alpha1.PodSecurityConstraintsSpec) (map[string]string, error) {
	spec, enabled, err := enabledFeatures(spec)
	if err != nil || spec == nil {
		return nil, err
	}
	out := map[string]string{}
	for _, ef := range enabled {
		d, _, err := decideDefaults(ef.Feature, spec, ef.block)
		if err != nil {
			return nil, err
		}
		if d.Withheld != "" {
			out[ef.Name] = d.Withheld
		}
	}
	return out, nil
}

// renderMutators gives the Gatekeeper mutators that fill in what the feature requires where a
// pod leaves it unset, or nothing when defaults are off (or withheld) for the feature. They
// match the same pods as the feature's constraint (kind Pod, the same excluded namespaces).
func renderMutators(f Feature, spec *v1alpha1.PodSecurityConstraintsSpec, block map[string]interface{}, excluded []string) ([]*unstructured.Unstructured, error) {
	d, rules, err := decideDefaults(f, spec, block)
	if err != nil || !d.On {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, rule := range rules {
		locations := []struct{ location, name string }{{rule.Location, rule.Name}}
		if rule.Containers {
			locations = locations[:0]
			for _, l := range containerLists {
				locations = append(locations, struct{ location, name string }{
					"spec." + l.field + "[name:*]." + rule.Location, rule.Name + l.suffix,
				})
			}
		}
		for _, loc := range locations {
			for _, v := range mutatorVariants {
				out = append(out, renderMutator(f, rule, loc.location, f.ObjectName()+"-"+loc.name+v.suffix, v, excluded))
			}
		}
	}
	return out, nil
}

func renderMutator(f Feature, rule defaultRule, location, name string, v mutatorVariant, excluded []string) *unstructured.Unstructured {
	applyTo := map[string]interface{}{
		"groups":   []interface{}{""},
		"versions": []interface{}{"v1"},
		"kinds":    []interface{}{"Pod"},
	}
	if v.operations != nil {
		applyTo["operations"] = v.operations
	}
	spec := map[string]interface{}{
		"applyTo": []interface{}{applyTo},
		"match": map[string]interface{}{
			"source": v.source,
			"scope":  "Namespaced",
			"kinds": []interface{}{map[string]interface{}{
				"apiGroups": []interface{}{""},
				"kinds":     []interface{}{"Pod"},
			}},
			"excludedNamespaces": toInterfaces(excluded),
		},
		"location": location,
	}
	gvk := AssignGVK
	if rule.Kind == ModifySetGVK.Kind {
		gvk = ModifySetGVK
		spec["parameters"] = map[string]interface{}{
			"operation": "merge",
			"values":    map[string]interface{}{"fromList": rule.Values},
		}
	} else {
		// Never overwrite: a value the pod sets stays, so an explicit violation is denied.
		spec["parameters"] = map[string]interface{}{
			"pathTests": []interface{}{map[string]interface{}{"subPath": location, "condition": "MustNotExist"}},
			"assign":    map[string]interface{}{"value": rule.Value},
		}
	}
	u := &unstructured.Unstructured{Object: map[string]interface{}{"spec": spec}}
	u.SetGroupVersionKind(gvk)
	u.SetName(name)
	u.SetLabels(map[string]string{LabelManagedBy: ManagedByValue, LabelFeature: f.Name})
	return u
}

// defaultRules renders the feature's defaults.yaml with its block of the spec.
func (f Feature) defaultRules(block map[string]interface{}) ([]defaultRule, error) {
	src, err := policies.ReadFile(f.Name + "/defaults.yaml")
	if err != nil {
		return nil, fmt.Errorf("reading defaults of feature %s: %w", f.Name, err)
	}
	tmpl, err := template.New(f.Name).Option("missingkey=error").Funcs(defaultsFuncs).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("parsing defaults of feature %s: %w", f.Name, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, block); err != nil {
		return nil, fmt.Errorf("rendering defaults of feature %s: %w", f.Name, err)
	}
	data, err := yaml.YAMLToJSON(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("defaults of feature %s are not valid YAML: %w", f.Name, err)
	}
	var rules []defaultRule
	if string(data) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rules); err != nil {
		return nil, fmt.Errorf("defaults of feature %s: %w", f.Name, err)
	}
	// Values as the API machinery holds them (whole numbers as int64).
	for i := range rules {
		if err := normalise(&rules[i].Value); err != nil {
			return nil, fmt.Errorf("defaults of feature %s: %w", f.Name, err)
		}
	}
	names := map[string]bool{}
	for _, r := range rules {
		switch {
		case r.Name == "" || r.Location == "":
			return nil, fmt.Errorf("defaults of feature %s: every rule needs a name and a location", f.Name)
		case names[r.Name]:
			return nil, fmt.Errorf("defaults of feature %s: rule name %q is used twice", f.Name, r.Name)
		case r.Kind != "" && r.Kind != AssignGVK.Kind && r.Kind != ModifySetGVK.Kind:
			return nil, fmt.Errorf("defaults of feature %s: rule %s has unknown kind %q", f.Name, r.Name, r.Kind)
		case r.Kind == ModifySetGVK.Kind && len(r.Values) == 0:
			return nil, fmt.Errorf("defaults of feature %s: ModifySet rule %s has no values", f.Name, r.Name)
		case r.Kind != ModifySetGVK.Kind && r.Value == nil:
			return nil, fmt.Errorf("defaults of feature %s: Assign rule %s has no value", f.Name, r.Name)
		case !r.Containers && !strings.HasPrefix(r.Location, "spec."):
			return nil, fmt.Errorf("defaults of feature %s: rule %s must set a field under spec", f.Name, r.Name)
		}
		names[r.Name] = true
	}
	return rules, nil
}

func normalise(v *interface{}) error {
	if *v == nil {
		return nil
	}
	data, err := json.Marshal(*v)
	if err != nil {
		return err
	}
	return utiljson.Unmarshal(data, v)
}

// defaultsFuncs are the functions a defaults.yaml may call.
var defaultsFuncs = template.FuncMap{
	// get looks up a path of map keys and list indexes in the block; "" when it is missing.
	"get": func(v interface{}, path ...interface{}) interface{} {
		for _, p := range path {
			switch k := p.(type) {
			case string:
				m, ok := v.(map[string]interface{})
				if !ok {
					return ""
				}
				if v, ok = m[k]; !ok {
					return ""
				}
			case int:
				l, ok := v.([]interface{})
				if !ok || k < 0 || k >= len(l) {
					return ""
				}
				v = l[k]
			default:
				return ""
			}
		}
		return v
	},
	// contains reports whether a list holds a value.
	"contains": func(list interface{}, value interface{}) bool {
		l, _ := list.([]interface{})
		return slices.Contains(l, value)
	},
	"toJSON": func(v interface{}) (string, error) {
		data, err := json.Marshal(v)
		return string(data), err
	},
}
