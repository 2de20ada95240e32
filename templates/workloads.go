package templates

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// ExpansionGVK is the ExpansionTemplate version the operator writes (the one Gatekeeper's
// controller watches).
var ExpansionGVK = schema.GroupVersionKind{Group: "expansion.gatekeeper.sh", Version: "v1beta1", Kind: "ExpansionTemplate"}

// ExpansionCRDName is the CRD that serves ExpansionTemplates; its plural is the singular word.
const ExpansionCRDName = "expansiontemplate.expansion.gatekeeper.sh"

// podGVK is what every workload is expanded into.
var podGVK = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}

// WorkloadKind is a kind whose objects embed a pod template, and where the template is.
type WorkloadKind struct {
	GVK schema.GroupVersionKind
	// TemplatePath is the dot path of the pod template in the object.
	TemplatePath string
	// BuiltIn kinds are checked without being listed in spec.workloads.extraKinds.
	BuiltIn bool
}

// BuiltInWorkloadKinds lists the Kubernetes workload kinds checked by default. A CronJob is
// expanded straight into its Pod: expanding it into a Job that the Job template expands again
// would work too, but every template added to that chain multiplies a violation's messages.
func BuiltInWorkloadKinds() []WorkloadKind {
	return []WorkloadKind{
		{GVK: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, TemplatePath: "spec.template", BuiltIn: true},
		{GVK: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}, TemplatePath: "spec.template", BuiltIn: true},
		{GVK: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}, TemplatePath: "spec.template", BuiltIn: true},
		{GVK: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}, TemplatePath: "spec.template", BuiltIn: true},
		{GVK: schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}, TemplatePath: "spec.template", BuiltIn: true},
		{GVK: schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}, TemplatePath: "spec.jobTemplate.spec.template", BuiltIn: true},
		{GVK: schema.GroupVersionKind{Version: "v1", Kind: "ReplicationController"}, TemplatePath: "spec.template", BuiltIn: true},
	}
}

// WorkloadKinds are the kinds a spec has checked as workloads: the built-ins, then the
// extraKinds in the order written.
func WorkloadKinds(spec *v1alpha1.PodSecurityConstraintsSpec) []WorkloadKind {
	kinds := BuiltInWorkloadKinds()
	if spec.Workloads == nil {
		return kinds
	}
	for _, k := range spec.Workloads.ExtraKinds {
		kinds = append(kinds, WorkloadKind{
			GVK:          schema.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind},
			TemplatePath: k.TemplatePath,
		})
	}
	return kinds
}

// ExpansionName is the name of the ExpansionTemplate for a workload kind. Gatekeeper puts it
// into every message about a workload ("[Implied by psc-deployment]"), so it stays readable:
// psc-<kind> for the built-ins, psc-<kind>.<group> for others, shortened with a hash when the
// name would exceed Gatekeeper's limit of 63 characters.
func (w WorkloadKind) ExpansionName() string {
	name := "psc-" + strings.ToLower(w.GVK.Kind)
	if !w.BuiltIn && w.GVK.Group != "" {
		name += "." + w.GVK.Group
	} else if !w.BuiltIn {
		name += ".core"
	}
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(w.GVK.Group + "/" + w.GVK.Kind))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	return strings.TrimRight(name[:63-len(suffix)], ".-") + suffix
}

// renderExpansion is the ExpansionTemplate that makes Gatekeeper judge objects of a workload
// kind as the Pod their template describes, with every constraint that matches Pods.
func renderExpansion(w WorkloadKind, spec *v1alpha1.PodSecurityConstraintsSpec) *unstructured.Unstructured {
	s := map[string]interface{}{
		"applyTo": []interface{}{map[string]interface{}{
			"groups":   []interface{}{w.GVK.Group},
			"versions": []interface{}{w.GVK.Version},
			"kinds":    []interface{}{w.GVK.Kind},
		}},
		"templateSource": w.TemplatePath,
		"generatedGVK": map[string]interface{}{
			"group":   podGVK.Group,
			"version": podGVK.Version,
			"kind":    podGVK.Kind,
		},
	}
	if spec.Workloads != nil && spec.Workloads.EnforcementAction != "" {
		s["enforcementAction"] = string(spec.Workloads.EnforcementAction)
	}
	u := &unstructured.Unstructured{Object: map[string]interface{}{"spec": s}}
	u.SetGroupVersionKind(ExpansionGVK)
	u.SetName(w.ExpansionName())
	u.SetLabels(map[string]string{LabelManagedBy: ManagedByValue, LabelWorkloadKind: w.GVK.Kind})
	return u
}

// LabelWorkloadKind names the workload kind an ExpansionTemplate is for.
const LabelWorkloadKind = "policy.podsecurity.dev/workload-kind"

// ManagedKind is a kind of object the operator writes with a fixed GVK. Constraint kinds are
// not listed: they come from the feature registry and the templates.
type ManagedKind struct {
	GVK  schema.GroupVersionKind
	Role Role
	// CRD is the name of the CRD that serves the kind.
	CRD string
}

// ManagedKinds lists the fixed kinds the operator writes, in apply order. Pruning lists
// each of them by our label.
func ManagedKinds() []ManagedKind {
	return []ManagedKind{
		{GVK: TemplateGVK, Role: RoleTemplate, CRD: "constrainttemplates.templates.gatekeeper.sh"},
		{GVK: AssignGVK, Role: RoleMutator, CRD: AssignCRDName},
		{GVK: ModifySetGVK, Role: RoleMutator, CRD: ModifySetCRDName},
		{GVK: ExpansionGVK, Role: RoleExpansion, CRD: ExpansionCRDName},
	}
}

// ManagedKindOf returns the fixed kind of a GVK.
func ManagedKindOf(gvk schema.GroupVersionKind) (ManagedKind, bool) {
	for _, k := range ManagedKinds() {
		if k.GVK == gvk {
			return k, true
		}
	}
	return ManagedKind{}, false
}
