package validation

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// invalidCase is a spec the CRD must reject, with (part of) the message a person reads. The
// same table runs in process (validation_test.go) and against a real API server
// (apiserver_test.go).
type invalidCase struct {
	name string
	// name of the object; default "cluster"
	objName string
	spec    string // YAML
	message string
}

var invalidCases = []invalidCase{
	{name: "one per cluster", objName: "prod", spec: `{}`, message: "there is one PodSecurityConstraints per cluster and it must be named 'cluster'"},
	{name: "enforcement action enum", spec: `{enforcementAction: block}`, message: `Unsupported value: "block": supported values: "deny", "warn", "dryrun"`},
	{name: "feature enforcement action enum", spec: `{privilegedContainers: {enabled: true, enforcementAction: audit}}`, message: `spec.privilegedContainers.enforcementAction: Unsupported value: "audit"`},
	{name: "feature needs enabled", spec: `{privilegedContainers: {}}`, message: "spec.privilegedContainers.enabled: Required value"},
	{name: "namespace pattern", spec: `{excludedNamespaces: [Kube_System]}`, message: "must be a namespace name (lower-case letters, digits and '-') or a prefix ending in '*'"},
	{name: "namespace glob only at the end", spec: `{excludedNamespaces: ["*-system"]}`, message: "or a prefix ending in '*', such as kube-*"},
	{name: "namespace list is a set", spec: `{excludedNamespaces: [a, a]}`, message: `spec.excludedNamespaces[1]: Duplicate value: "a"`},
	{name: "namespace list bounded", spec: `{excludedNamespaces: [n0,n1,n2,n3,n4,n5,n6,n7,n8,n9,n10,n11,n12,n13,n14,n15,n16,n17,n18,n19,n20,n21,n22,n23,n24,n25,n26,n27,n28,n29,n30,n31,n32,n33,n34,n35,n36,n37,n38,n39,n40,n41,n42,n43,n44,n45,n46,n47,n48,n49,n50,n51,n52,n53,n54,n55,n56,n57,n58,n59,n60,n61,n62,n63,n64]}`, message: "must have at most 64 items"},
	{name: "exempt image may not be only a glob", spec: `{exemptImages: ["*"]}`, message: "must be an image reference without spaces; '*' is allowed only at the end, after at least one character"},
	{name: "exempt image glob only at the end", spec: `{exemptImages: ["registry/*/app"]}`, message: "'*' is allowed only at the end"},
	{name: "host port above 65535", spec: `{hostNetworking: {enabled: true, hostPorts: [{min: 80, max: 70000}]}}`, message: "spec.hostNetworking.hostPorts[0].max: Invalid value: 70000: spec.hostNetworking.hostPorts[0].max in body should be less than or equal to 65535"},
	{name: "host port below 0", spec: `{hostNetworking: {enabled: true, hostPorts: [{min: -1, max: 80}]}}`, message: "should be greater than or equal to 0"},
	{name: "host port range order", spec: `{hostNetworking: {enabled: true, hostPorts: [{min: 9000, max: 8000}]}}`, message: "spec.hostNetworking.hostPorts[0]: Invalid value: min must not be greater than max"},
	{name: "probe host not empty", spec: `{probeHosts: {enabled: true, allowedHosts: [""]}}`, message: "spec.probeHosts.allowedHosts[0]: Invalid value"},
	{name: "probe hosts are a set", spec: `{probeHosts: {enabled: true, allowedHosts: [a, a]}}`, message: `spec.probeHosts.allowedHosts[1]: Duplicate value: "a"`},
	{name: "profile enum", spec: `{profile: privileged}`, message: `spec.profile: Unsupported value: "privileged": supported values: "baseline", "restricted"`},
	{name: "profile version range", spec: `{profile: baseline, profileVersion: v1.24}`, message: "must be a Pod Security Standards version from v1.25 to v1.35, such as v1.29"},
	{name: "profile version form", spec: `{profile: baseline, profileVersion: latest}`, message: "must be a Pod Security Standards version from v1.25 to v1.35"},
	{name: "profile version needs a profile", spec: `{profileVersion: v1.30}`, message: "profileVersion needs a profile"},
	{name: "volume type enum", spec: `{volumeTypes: {enabled: true, allowed: [configMap, configmaps]}}`, message: `spec.volumeTypes.allowed[1]: Unsupported value: "configmaps"`},
	{name: "host path without dot-dot segments", spec: `{hostFilesystem: {enabled: true, allowedHostPaths: [{pathPrefix: /var/log/../../etc}]}}`, message: "spec.hostFilesystem.allowedHostPaths[0].pathPrefix: Invalid value: \"/var/log/../../etc\": must not contain '..' path segments"},
	{name: "host path ending in dot-dot", spec: `{hostFilesystem: {enabled: true, allowedHostPaths: [{pathPrefix: /var/..}]}}`, message: "must not contain '..' path segments"},
	{name: "host path absolute", spec: `{hostFilesystem: {enabled: true, allowedHostPaths: [{pathPrefix: var/log}]}}`, message: "must be an absolute path starting with '/'"},
	{name: "user ID not negative", spec: `{usersAndGroups: {enabled: true, runAsUser: {rule: MustRunAs, ranges: [{min: -5, max: 10}]}}}`, message: "spec.usersAndGroups.runAsUser.ranges[0].min: Invalid value: -5"},
	{name: "ID range order", spec: `{usersAndGroups: {enabled: true, fsGroup: {rule: MayRunAs, ranges: [{min: 2000, max: 1000}]}}}`, message: "spec.usersAndGroups.fsGroup.ranges[0]: Invalid value: min must not be greater than max"},
	{name: "runAsUser rule enum", spec: `{usersAndGroups: {enabled: true, runAsUser: {rule: MayRunAs}}}`, message: `spec.usersAndGroups.runAsUser.rule: Unsupported value: "MayRunAs"`},
	{name: "group rule enum", spec: `{usersAndGroups: {enabled: true, runAsGroup: {rule: MustRunAsNonRoot}}}`, message: `spec.usersAndGroups.runAsGroup.rule: Unsupported value: "MustRunAsNonRoot"`},
	{name: "runAsUser MustRunAs needs a range", spec: `{usersAndGroups: {enabled: true, runAsUser: {rule: MustRunAs}}}`, message: "rule MustRunAs requires at least one range"},
	{name: "group MustRunAs needs a range", spec: `{usersAndGroups: {enabled: true, supplementalGroups: {rule: MustRunAs, ranges: []}}}`, message: "rules MustRunAs and MayRunAs require at least one range"},
	{name: "ranges unused with RunAsAny", spec: `{usersAndGroups: {enabled: true, fsGroup: {rule: RunAsAny, ranges: [{min: 1, max: 2}]}}}`, message: "ranges are not used with rule RunAsAny"},
	{name: "ranges unused with MustRunAsNonRoot", spec: `{usersAndGroups: {enabled: true, runAsUser: {rule: MustRunAsNonRoot, ranges: [{min: 1, max: 2}]}}}`, message: "ranges are only used with rule MustRunAs"},
	{name: "capability name upper case", spec: `{capabilities: {enabled: true, allowedCapabilities: [net_admin]}}`, message: "must be an upper-case capability name of letters, digits and '_', such as NET_BIND_SERVICE, or '*'"},
	{name: "capability without CAP_ prefix", spec: `{capabilities: {enabled: true, requiredDropCapabilities: [CAP_NET_RAW]}}`, message: "write capabilities without the CAP_ prefix, e.g. NET_ADMIN instead of CAP_NET_ADMIN"},
	{name: "capability not both allowed and dropped", spec: `{capabilities: {enabled: true, allowedCapabilities: [NET_ADMIN], requiredDropCapabilities: [NET_ADMIN]}}`, message: "a capability may not be both in allowedCapabilities and in requiredDropCapabilities"},
	{name: "required drop without glob", spec: `{capabilities: {enabled: true, requiredDropCapabilities: ["*"]}}`, message: "requiredDropCapabilities may not contain '*'; use ALL to require dropping every capability"},
	{name: "selinux entry not empty", spec: `{seLinux: {enabled: true, allowedSELinuxOptions: [{}]}}`, message: "set at least one of level, role, type and user"},
	{name: "proc mount enum", spec: `{procMount: {enabled: true, procMount: Masked}}`, message: `spec.procMount.procMount: Unsupported value: "Masked"`},
	{name: "apparmor profile form", spec: `{appArmor: {enabled: true, allowedProfiles: [RuntimeDefault]}}`, message: "must be runtime/default, unconfined, localhost/<profile> or a prefix of those ending in '*'"},
	{name: "apparmor needs profiles", spec: `{appArmor: {enabled: true, allowedProfiles: []}}`, message: "spec.appArmor.allowedProfiles: Invalid value: 0: spec.appArmor.allowedProfiles in body should have at least 1 items"},
	{name: "seccomp profile enum", spec: `{seccomp: {enabled: true, allowedProfiles: [runtime/default]}}`, message: `spec.seccomp.allowedProfiles[0]: Unsupported value: "runtime/default"`},
	{name: "seccomp localhost glob at the end", spec: `{seccomp: {enabled: true, allowedProfiles: [Localhost], allowedLocalhostFiles: ["profiles/*/audit.json"]}}`, message: "spec.seccomp.allowedLocalhostFiles[0]: Invalid value: \"profiles/*/audit.json\": '*' is allowed only at the end"},
	{name: "sysctl name rules", spec: `{sysctls: {enabled: true, forbiddenSysctls: [Kernel.Shm]}}`, message: "must be a sysctl name such as net.ipv4.ip_local_port_range"},
	{name: "sysctl glob only trailing", spec: `{sysctls: {enabled: true, forbiddenSysctls: ["kernel.*.max"]}}`, message: "optionally ending in '*'"},
	{name: "sysctl allowed and forbidden overlap", spec: `{sysctls: {enabled: true, forbiddenSysctls: [net.core.somaxconn], allowedSysctls: [net.core.somaxconn]}}`, message: "an allowed sysctl may not also be forbidden (exactly or by a forbidden prefix)"},
	{name: "setDefaults is a boolean", spec: `{setDefaults: "yes"}`, message: "spec.setDefaults: Invalid value: \"string\": spec.setDefaults in body must be of type boolean"},
	{name: "feature setDefaults is a boolean", spec: `{seccomp: {enabled: true, allowedProfiles: [RuntimeDefault], setDefaults: 1}}`, message: "spec.seccomp.setDefaults: Invalid value: \"integer\": spec.seccomp.setDefaults in body must be of type boolean"},
	{name: "workloads enforcement action enum", spec: `{workloads: {enforcementAction: block}}`, message: `spec.workloads.enforcementAction: Unsupported value: "block"`},
	{name: "extra kind not core Pod", spec: `{workloads: {extraKinds: [{group: "", version: v1, kind: Pod, templatePath: spec}]}}`, message: "Pods are always checked; extraKinds lists kinds that embed a pod template"},
	{name: "extra kind not a built-in", spec: `{workloads: {extraKinds: [{group: apps, version: v1, kind: Deployment, templatePath: spec.template}]}}`, message: "this kind is built in and checked already; list only other kinds"},
	{name: "extra kind core ReplicationController is built in", spec: `{workloads: {extraKinds: [{group: "", version: v1, kind: ReplicationController, templatePath: spec.template}]}}`, message: "this kind is built in and checked already"},
	{name: "extra kinds no duplicates", spec: `{workloads: {extraKinds: [{group: argoproj.io, version: v1alpha1, kind: Rollout, templatePath: spec.template}, {group: argoproj.io, version: v1beta1, kind: Rollout, templatePath: spec.template}]}}`, message: `spec.workloads.extraKinds[1]: Duplicate value`},
	{name: "extra kind path without list index", spec: `{workloads: {extraKinds: [{group: example.com, version: v1, kind: Runner, templatePath: "spec.templates[0]"}]}}`, message: "must be a dot-separated field path such as spec.template; list indexes and wildcards are not supported"},
	{name: "extra kind path not starting with a dot", spec: `{workloads: {extraKinds: [{group: example.com, version: v1, kind: Runner, templatePath: .spec.template}]}}`, message: "must be a dot-separated field path"},
	{name: "extra kind version syntax", spec: `{workloads: {extraKinds: [{group: example.com, version: "1.0", kind: Runner, templatePath: spec.template}]}}`, message: "must be an API version such as v1, v1beta1 or v1alpha2"},
	{name: "extra kind kind syntax", spec: `{workloads: {extraKinds: [{group: example.com, version: v1, kind: runner, templatePath: spec.template}]}}`, message: "must be a kind name such as Rollout"},
	{name: "extra kind group syntax", spec: `{workloads: {extraKinds: [{group: Example.COM, version: v1, kind: Runner, templatePath: spec.template}]}}`, message: "must be an API group such as argoproj.io"},
	{name: "extra kind needs a path", spec: `{workloads: {extraKinds: [{group: example.com, version: v1, kind: Runner}]}}`, message: "spec.workloads.extraKinds[0].templatePath: Required value"},
	{name: "extra kinds bounded", spec: `{workloads: {extraKinds: [` + extraKinds(17) + `]}}`, message: "must have at most 16 items"},
	{name: "sysctl allowed under a forbidden prefix", spec: `{sysctls: {enabled: true, forbiddenSysctls: ["kernel.*"], allowedSysctls: [kernel.shm_rmid_forced]}}`, message: "an allowed sysctl may not also be forbidden"},
}

// extraKinds gives n distinct extraKinds entries in YAML flow style.
func extraKinds(n int) string {
	entries := make([]string, n)
	for i := range entries {
		entries[i] = fmt.Sprintf("{group: example.com, version: v1, kind: Runner%d, templatePath: spec.template}", i)
	}
	return strings.Join(entries, ", ")
}

// validSpecs are accepted: both samples, plus edge values.
func validSpecs(t *testing.T) map[string]map[string]interface{} {
	t.Helper()
	out := map[string]map[string]interface{}{}
	for _, f := range []string{"policy_v1alpha1_podsecurityconstraints_full.yaml", "policy_v1alpha1_podsecurityconstraints_minimal.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "..", "config", "samples", f))
		if err != nil {
			t.Fatal(err)
		}
		obj := map[string]interface{}{}
		if err := yaml.UnmarshalStrict(data, &obj); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = obj
	}
	for name, spec := range map[string]string{
		"empty spec":                     `{}`,
		"edge ports and IDs":             `{hostNetworking: {enabled: true, hostPorts: [{min: 0, max: 65535}, {min: 80, max: 80}]}, usersAndGroups: {enabled: true, runAsUser: {rule: MustRunAs, ranges: [{min: 0, max: 0}]}}}`,
		"globs where allowed":            `{excludedNamespaces: ["kube-*"], exemptImages: ["registry.example.com/debug/*"], sysctls: {enabled: true, forbiddenSysctls: ["*"]}, appArmor: {enabled: true, allowedProfiles: ["*"]}}`,
		"any capability, ALL dropped":    `{capabilities: {enabled: true, allowedCapabilities: ["*"], requiredDropCapabilities: [ALL]}}`,
		"sysctl prefix within segment":   `{sysctls: {enabled: true, forbiddenSysctls: ["kernel.shm*"], allowedSysctls: [net.ipv4.ip_local_port_range, "net/ipv4/tcp_*"]}}`,
		"every volume type":              `{volumeTypes: {enabled: true, allowed: ["*"]}}`,
		"defaults on, one feature off":   `{setDefaults: true, readOnlyRootFilesystem: {enabled: true, setDefaults: false}, privilegeEscalation: {enabled: true}}`,
		"workloads off":                  `{workloads: {enabled: false}}`,
		"workloads warn, 16 extra kinds": `{workloads: {enforcementAction: warn, extraKinds: [` + extraKinds(16) + `]}}`,
		"extra kind in the core group":   `{workloads: {extraKinds: [{group: "", version: v1, kind: PodTemplate, templatePath: template}]}}`,
		"dots inside path segments":      `{hostFilesystem: {enabled: true, allowedHostPaths: [{pathPrefix: /var/lib/..data}, {pathPrefix: /opt/app..v2/x}, {pathPrefix: /srv/.cache}]}}`,
	} {
		out[name] = object(t, "cluster", spec)
	}
	return out
}

// object builds a PodSecurityConstraints in its JSON form.
func object(t *testing.T, name, spec string) map[string]interface{} {
	t.Helper()
	s := map[string]interface{}{}
	if err := yaml.UnmarshalStrict([]byte(spec), &s); err != nil {
		t.Fatalf("spec %s: %v", spec, err)
	}
	return map[string]interface{}{
		"apiVersion": "policy.podsecurity.dev/v1alpha1",
		"kind":       "PodSecurityConstraints",
		"metadata":   map[string]interface{}{"name": name},
		"spec":       s,
	}
}

func (c invalidCase) object(t *testing.T) map[string]interface{} {
	name := c.objName
	if name == "" {
		name = "cluster"
	}
	return object(t, name, c.spec)
}
