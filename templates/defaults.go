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

// containerLists are the pod fields whose containers get container-level defaults. Ephemeral
// containers are only ever added to a stored pod (an UPDATE of pods/ephemeralcontainers),
// which is not defaulted: see mutatorVariant. PodSecurityPolicy did not default them either.
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

// defaultsOn resolves the feature's setDefaults against spec.setDefaults.
func defaultsOn(spec *v1alpha1.PodSecurityConstraintsSpec, block map[string]interface{}) bool {
	if b, ok := block["setDefaults"].(bool); ok {
		return b
	}
	return spec.SetDefaults != nil && *spec.SetDefaults
}

// renderMutators gives the Gatekeeper mutators that fill in what the feature requires where a
// pod leaves it unset, or nothing when defaults are off for the feature. They match the same
// pods as the feature's constraint (kind Pod, the same excluded namespaces).
func renderMutators(f Feature, spec *v1alpha1.PodSecurityConstraintsSpec, block map[string]interface{}, excluded []string) ([]*unstructured.Unstructured, error) {
	if !f.HasDefaults() || !defaultsOn(spec, block) {
		return nil, nil
	}
	rules, err := f.defaultRules(block)
	if err != nil {
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
				out = append(out, renderMutator(f, rule, loc.location, f.ConstraintName()+"-"+loc.name+v.suffix, v, excluded))
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
	u.SetLabels(f.labels())
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
