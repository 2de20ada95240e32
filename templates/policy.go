package templates

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// One ConstraintTemplate holds every feature's policy. Gatekeeper pays a fixed cost per
// constraint on every admission review (its CEL driver rebuilds the evaluation context for each
// constraint, and each template is a separate Rego compiler), and its template controller creates
// one constraint CRD after the other. So the features are folded into one template, kind
// PolicyKind, whose code runs a feature only where the constraint's parameters name it
// (parameters.features.<feature>), and into one constraint per enforcement action (ConstraintName)
// plus one for each feature with its own excludedNamespaces.
//
// The policy of each feature still lives in its own folder (<feature>/template.yaml: its
// parameters' schema, its CEL variables ending in `violations`, and its Rego package), where its
// cases.yaml tests it; PolicyTemplate assembles them:
//
//   - CEL: the shared variables of lib/psc.cel.yaml once; then per feature its own variables,
//     renamed <feature>_<name>, reading variables.<feature>_parameters (its entry of
//     parameters.features) instead of variables.parameters and, for a feature with its own
//     exemptImages, its own <feature>_checkedContainers; its `violations` is empty unless the
//     parameters name the feature; and one validation per feature, so that each feature still
//     yields its own message.
//   - Rego: each feature's package becomes the library lib.features.<feature>; the entry point
//     runs the library of each feature the parameters name, with input.parameters set to the
//     feature's parameters (and the constraint's exemptImages unless the feature has its own).
const (
	// PolicyKind is the kind of the one template's constraints. The PSC prefix keeps it apart
	// from gatekeeper-library's K8sPSP* kinds.
	PolicyKind = "PSCPodSecurity"
	// PolicyTemplateName is the template's name: Gatekeeper requires the lower-cased kind.
	PolicyTemplateName = "pscpodsecurity"
	// LabelComponent tells the operator's objects apart by what they serve.
	LabelComponent = "policy.podsecurity.dev/component"
	// ComponentPolicy marks the policy template and its constraints.
	ComponentPolicy = "policy"
)

// PolicyName is the ValidatingAdmissionPolicy Gatekeeper generates from the template.
func PolicyName() string { return "gatekeeper-" + PolicyTemplateName }

// BindingName is the ValidatingAdmissionPolicyBinding Gatekeeper generates for one of the
// template's constraints (gatekeeper-<kind>-<name>, lower case; ours are far below the length
// limit at which Gatekeeper would shorten it).
func BindingName(constraintName string) string {
	return "gatekeeper-" + PolicyTemplateName + "-" + constraintName
}

// FeatureOfMessage is the feature a violation message is about: every message starts with
// "psc/<feature>: ", after the "[Implied by <expansion template>] " Gatekeeper puts before the
// results of a workload's generated pod. Empty for a message of no feature.
func FeatureOfMessage(msg string) string {
	for strings.HasPrefix(msg, "[Implied by ") {
		_, after, ok := strings.Cut(msg, "] ")
		if !ok {
			return ""
		}
		msg = after
	}
	rest, ok := strings.CutPrefix(msg, "psc/")
	if !ok {
		return ""
	}
	name, _, ok := strings.Cut(rest, ":")
	if !ok {
		return ""
	}
	if _, known := FeatureByName(name); !known {
		return ""
	}
	return name
}

// regoPackage is the Rego package a feature's rules become in the policy template.
func (f Feature) regoPackage() string { return "lib.features." + f.Name }

// policyRegoEntryPoint runs the rules of each feature named in the constraint's parameters.
// input.parameters is replaced by the feature's own parameters for its rules, which read them
// as they read a constraint of their own; a feature without its own exemptImages gets the
// constraint's.
func policyRegoEntryPoint() string {
	var containerLevel []string
	for _, f := range Features() {
		if f.ContainerLevel {
			containerLevel = append(containerLevel, strconv.Quote(f.Name))
		}
	}
	return `package ` + PolicyTemplateName + `

# Each feature's rules are the library lib.features.<feature> (see templates/policy.go); they
# run only for the features the constraint's parameters name, each with its own parameters.
violation contains v if {
	some name, params in input.parameters.features
	v := data.lib.features[name].violation[_] with input.parameters as object.union({"exemptImages": exempt_images(name)}, params)
}

# exempt_images(name): the constraint's exemptImages for a container-level feature (its own
# parameters may override them), none for a pod-level one.
exempt_images(name) := object.get(input.parameters, "exemptImages", []) if name in container_level
else := []

container_level := {` + strings.Join(containerLevel, ", ") + `}
`
}

var (
	variableRef = regexp.MustCompile(`\bvariables\.[A-Za-z_][A-Za-z0-9_]*\b`)
	packageLine = regexp.MustCompile(`(?m)^package [A-Za-z0-9_.]+$`)
)

// gateName is the template's CEL match condition: some feature has a violation. The API
// server's validator, which Gatekeeper's CEL driver uses, evaluates the validations and then
// every messageExpression, each in a fresh activation whose variables are computed anew; a
// false match condition ends the evaluation after one. So a compliant pod is judged once
// instead of twice, and a violating one a third time. A ValidatingAdmissionPolicy's match
// conditions cannot read variables, so Render drops it when the template generates one
// (spec.validatingAdmissionPolicy).
const gateName = "psc-has-violations"

// PolicyTemplate is the one ConstraintTemplate of every feature, labelled. generateVAP is
// false; Render sets it with spec.validatingAdmissionPolicy.
func PolicyTemplate() (*unstructured.Unstructured, error) {
	lib, err := readCELLibrary()
	if err != nil {
		return nil, err
	}
	regoLib, err := policies.ReadFile("lib/psc.rego")
	if err != nil {
		return nil, fmt.Errorf("reading shared library: %w", err)
	}
	libNames := map[string]string{}
	var checkedContainers string
	vars := make([]interface{}, 0, 256)
	for _, v := range lib.Variables {
		name, _ := v["name"].(string)
		expr, _ := v["expression"].(string)
		libNames[name] = expr
		if name == "checkedContainers" {
			checkedContainers = expr
		}
		vars = append(vars, map[string]interface{}{"name": name, "expression": expr})
	}
	if checkedContainers == "" || libNames["parameters"] == "" || libNames["exemptImages"] == "" {
		return nil, fmt.Errorf("shared CEL library: parameters, exemptImages and checkedContainers must be defined")
	}

	var validations, regoLibs []interface{}
	var anyViolation, featureParameters, featureContainers []string
	// The parameters and the checked containers of every feature are two shared variables,
	// maps by feature name, computed at most once per activation: one variable of each kind per
	// feature would cost a program evaluation each (the validator's variables are not free).
	// They go right after the shared library's variables, before the first feature's.
	sharedAt := len(vars)
	regoLibs = append(regoLibs, string(regoLib))
	featureSchemas := map[string]interface{}{}
	for _, f := range Features() {
		src, err := f.source()
		if err != nil {
			return nil, err
		}
		featureSchemas[f.Name] = src.schema
		own := map[string]bool{}
		for _, v := range src.variables {
			own[v.Name] = true
		}
		prefix := f.Name + "_"
		rename := func(expr string) string {
			return variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
				name := strings.TrimPrefix(ref, "variables.")
				switch {
				case own[name]:
					return "variables." + prefix + name
				case name == "parameters":
					return "variables.featureParameters." + f.Name
				case name == "checkedContainers":
					return "variables.featureContainers." + f.Name
				}
				return ref
			})
		}
		// The feature's parameters and checked containers, where its expressions use them.
		used := map[string]bool{}
		for _, v := range src.variables {
			for _, ref := range variableRef.FindAllString(v.Expression, -1) {
				used[strings.TrimPrefix(ref, "variables.")] = true
			}
		}
		uses := func(name string) bool { return used[name] }
		featureParams := "variables.parameters.?features.?" + f.Name
		if uses("parameters") || uses("checkedContainers") {
			featureParameters = append(featureParameters, fmt.Sprintf("%q: %s.orValue({})", f.Name, featureParams))
		}
		if uses("exemptImages") {
			return nil, fmt.Errorf("the policy of feature %s: use variables.checkedContainers, not variables.exemptImages", f.Name)
		}
		if uses("checkedContainers") {
			// The constraint's exemptImages, or the feature's own: only then are its checked
			// containers computed apart from the shared ones. exemptImages do not apply to
			// pod-level features.
			mine := "variables.featureParameters." + f.Name
			own := strings.ReplaceAll(checkedContainers, "variables.exemptImages", "dyn("+mine+".exemptImages)")
			expr := mine + ".?exemptImages.hasValue() ? (" + own + ") : variables.checkedContainers"
			if !f.ContainerLevel {
				expr = strings.ReplaceAll(checkedContainers, "variables.exemptImages", "dyn([])")
			}
			featureContainers = append(featureContainers, fmt.Sprintf("%q: %s", f.Name, expr))
		}
		// violations lists the messages and violating says whether there are any: the validation
		// and the gate test violating, only the messageExpression builds the messages (see
		// gateName).
		for _, v := range src.variables {
			expr := rename(v.Expression)
			switch v.Name {
			case "violations":
				expr = "!" + featureParams + ".hasValue() ? [] : (" + expr + ")"
			case "violating":
				expr = featureParams + ".hasValue() && (" + expr + ")"
			}
			vars = append(vars, map[string]interface{}{"name": prefix + v.Name, "expression": expr})
		}
		violations := "variables." + prefix + "violations"
		violating := "variables." + prefix + "violating"
		anyViolation = append(anyViolation, violating)
		validations = append(validations, map[string]interface{}{
			"expression": "!" + violating,
			"messageExpression": strings.NewReplacer("variables.violations", violations, "FEATURE", f.Name,
				"LIMIT", strconv.Itoa(celMessageLimit), "CUT", strconv.Itoa(celMessageCut),
				"CHARS", strconv.Itoa(celMessageCutChars)).Replace(celMessageExpression),
			"message": strings.ReplaceAll(celStaticMessage, "FEATURE", f.Name),
		})
		lines := packageLine.FindAllStringIndex(src.rego, -1)
		if len(lines) != 1 {
			return nil, fmt.Errorf("the Rego of feature %s must have exactly one package line, found %d", f.Name, len(lines))
		}
		regoLibs = append(regoLibs, src.rego[:lines[0][0]]+"package "+f.regoPackage()+src.rego[lines[0][1]:])
	}

	vars = slices.Insert(vars, sharedAt,
		interface{}(map[string]interface{}{"name": "featureParameters", "expression": "{" + strings.Join(featureParameters, ", ") + "}"}),
		interface{}(map[string]interface{}{"name": "featureContainers", "expression": "{" + strings.Join(featureContainers, ", ") + "}"}))

	schema := map[string]interface{}{
		"type":        "object",
		"description": "The features this constraint enforces and their parameters.",
		"properties": map[string]interface{}{
			"exemptImages": map[string]interface{}{
				"type":        "array",
				"description": `Images whose containers no container-level feature checks, unless the feature has its own exemptImages; a trailing "*" matches a prefix.`,
				"items":       map[string]interface{}{"type": "string"},
			},
			"features": map[string]interface{}{
				"type":        "object",
				"description": "The features this constraint enforces, each with its parameters; a feature not named here is not checked by this constraint.",
				"properties":  featureSchemas,
			},
		},
	}
	u := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": TemplateGVK.GroupVersion().String(),
		"kind":       TemplateGVK.Kind,
		"metadata": map[string]interface{}{
			"name": PolicyTemplateName,
			"annotations": map[string]interface{}{
				"description": "Every pod security feature of psc-operator. A constraint's parameters.features names the features it enforces; see each feature's folder in templates/ for its rules.",
			},
		},
		"spec": map[string]interface{}{
			"crd": map[string]interface{}{"spec": map[string]interface{}{
				"names":      map[string]interface{}{"kind": PolicyKind},
				"validation": map[string]interface{}{"openAPIV3Schema": schema},
			}},
			"targets": []interface{}{map[string]interface{}{
				"target": "admission.k8s.gatekeeper.sh",
				"code": []interface{}{
					map[string]interface{}{"engine": EngineCEL, "source": map[string]interface{}{
						"variables":   vars,
						"validations": validations,
						// A pod with no violation ends the evaluation here: see gateName.
						"matchCondition": []interface{}{map[string]interface{}{
							"name": gateName, "expression": strings.Join(anyViolation, " || "),
						}},
						"failurePolicy": celFailurePolicy,
						"generateVAP":   generateVAP,
					}},
					map[string]interface{}{"engine": EngineRego, "source": map[string]interface{}{
						"version": "v1",
						"rego":    policyRegoEntryPoint(),
						"libs":    regoLibs,
					}},
				},
			}},
		},
	}}
	u.SetLabels(map[string]string{LabelManagedBy: ManagedByValue, LabelComponent: ComponentPolicy})
	return u, nil
}

// featureSource is what the policy template takes from a feature's folder.
type featureSource struct {
	schema    interface{}
	variables []celVariable
	rego      string
}

type celVariable struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
}

// source reads the feature's template.yaml: the parameters' schema, the CEL variables (the
// last named violations) and the Rego module.
func (f Feature) source() (featureSource, error) {
	var out featureSource
	data, err := policies.ReadFile(f.Name + "/template.yaml")
	if err != nil {
		return out, fmt.Errorf("reading the policy of feature %s: %w", f.Name, err)
	}
	var t struct {
		Spec struct {
			CRD struct {
				Spec struct {
					Validation struct {
						OpenAPIV3Schema map[string]interface{} `json:"openAPIV3Schema"`
					} `json:"validation"`
				} `json:"spec"`
			} `json:"crd"`
			Targets []struct {
				Target string `json:"target"`
				Code   []struct {
					Engine string `json:"engine"`
					Source struct {
						Variables   []celVariable `json:"variables"`
						Validations []interface{} `json:"validations"`
						Version     string        `json:"version"`
						Rego        string        `json:"rego"`
						Libs        []string      `json:"libs"`
					} `json:"source"`
				} `json:"code"`
			} `json:"targets"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &t); err != nil {
		return out, fmt.Errorf("parsing the policy of feature %s: %w", f.Name, err)
	}
	if len(t.Spec.Targets) != 1 {
		return out, fmt.Errorf("the policy of feature %s must have one target, found %d", f.Name, len(t.Spec.Targets))
	}
	out.schema = t.Spec.CRD.Spec.Validation.OpenAPIV3Schema
	if out.schema == nil {
		out.schema = map[string]interface{}{"type": "object"}
	}
	var cel, rego int
	for _, c := range t.Spec.Targets[0].Code {
		switch c.Engine {
		case EngineCEL:
			cel++
			out.variables = c.Source.Variables
			if len(c.Source.Validations) > 0 {
				return out, fmt.Errorf("the policy of feature %s: %s validations are added by the renderer", f.Name, EngineCEL)
			}
		case EngineRego:
			rego++
			out.rego = c.Source.Rego
			if c.Source.Version != "v1" || len(c.Source.Libs) > 0 {
				return out, fmt.Errorf("the policy of feature %s: Rego must be version v1 without libs of its own", f.Name)
			}
		}
	}
	if cel != 1 || rego != 1 {
		return out, fmt.Errorf("the policy of feature %s needs one %s and one %s code entry, found %d and %d", f.Name, EngineCEL, EngineRego, cel, rego)
	}
	if n := len(out.variables); n < 2 || out.variables[n-1].Name != "violations" || out.variables[n-2].Name != "violating" {
		return out, fmt.Errorf("the policy of feature %s: its %s variables must end with one named violating and one named violations", f.Name, EngineCEL)
	}
	for _, v := range out.variables {
		if strings.Contains(v.Name, "_") {
			return out, fmt.Errorf("the policy of feature %s: variable %q: names must not contain _ (the template prefixes them with <feature>_)", f.Name, v.Name)
		}
	}
	return out, nil
}

// readCELLibrary reads lib/psc.cel.yaml.
func readCELLibrary() (celLibrary, error) {
	var lib celLibrary
	data, err := policies.ReadFile("lib/psc.cel.yaml")
	if err != nil {
		return lib, fmt.Errorf("reading shared CEL library: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &lib); err != nil {
		return lib, fmt.Errorf("parsing shared CEL library: %w", err)
	}
	return lib, nil
}
