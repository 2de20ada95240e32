package policytest

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Case is one entry of a feature's cases.yaml (templates/<feature>/cases.yaml): a spec, an
// admission request, and the exact messages the policies must produce (none for an admitted
// pod). The policy suite evaluates cases with the engine; the e2e suite replays creation
// cases against real Gatekeeper.
type Case struct {
	Name string `json:"name"`
	// Spec is the PodSecurityConstraints spec; default: only the folder's feature, enabled.
	Spec        map[string]interface{} `json:"spec,omitempty"`
	Operation   string                 `json:"operation,omitempty"`
	SubResource string                 `json:"subResource,omitempty"`
	Namespace   string                 `json:"namespace,omitempty"`
	Object      map[string]interface{} `json:"object"`
	OldObject   map[string]interface{} `json:"oldObject,omitempty"`
	// Generated reviews the object as the Pod Gatekeeper generates from a workload's pod
	// template (an ExpansionTemplate): the workload's operation and no oldObject.
	Generated bool `json:"generated,omitempty"`
	// Violations are the expected messages, in any order.
	Violations []string `json:"violations"`
	// EnforcementAction, when set, is expected on every violation (default deny).
	EnforcementAction string `json:"enforcementAction,omitempty"`
}

// LoadCases reads a cases.yaml strictly: an unknown field is an error, not a silently
// ignored expectation.
func LoadCases(path string) ([]Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var file struct {
		Cases []Case `json:"cases"`
	}
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return file.Cases, nil
}

// SpecFor is the spec the case is evaluated with: its own, or the feature alone, enabled.
func (c Case) SpecFor(feature string) map[string]interface{} {
	if c.Spec != nil {
		return c.Spec
	}
	return map[string]interface{}{feature: map[string]interface{}{"enabled": true}}
}

// MessageSeparator joins the messages of one template's CEL validation: a validation yields
// at most one result, so where the Rego reports one violation per container the CEL code
// reports one whose message lists them all, separated by "; ".
const MessageSeparator = "; "

// Messages returns every message of vs, each split at MessageSeparator, sorted, so that the
// results of both engines compare equal when they report the same findings.
func Messages(vs []Violation) []string {
	msgs := make([]string, 0, len(vs))
	for _, v := range vs {
		msgs = append(msgs, v.Message)
	}
	return SplitMessages(msgs)
}

// SplitMessages splits each message at MessageSeparator and sorts the result.
func SplitMessages(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, strings.Split(m, MessageSeparator)...)
	}
	sort.Strings(out)
	return out
}
