// Package profiles turns spec.profile and spec.profileVersion into feature blocks: the Pod
// Security Standards (baseline and restricted) as this operator's features express them, for
// each version from v1.25 to the latest the bundled Pod Security Admission library knows.
//
// Merge rule: a feature block written in the spec replaces the profile's block for that
// feature entirely (enabled: false switches the control off); every other feature is filled
// in from the profile. Settings outside the feature blocks (enabled, enforcementAction,
// excludedNamespaces, exemptImages) are the spec's own.
package profiles

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// Versions the presets know: PSS v1.25 (the first release with the pod OS field, which the
// standards use to exempt Windows pods, and the release that removed PodSecurityPolicy) up to
// the latest of k8s.io/pod-security-admission v0.36.2. A test keeps LatestMinor equal to the
// library's api.LatestVersion().
const (
	OldestMinor = 25
	LatestMinor = 35
)

// LatestVersion is the version a profile follows without spec.profileVersion.
var LatestVersion = fmt.Sprintf("v1.%d", LatestMinor)

// Resolved reports the profile and version a spec puts in force; both empty without a
// profile.
func Resolved(spec *v1alpha1.PodSecurityConstraintsSpec) (profile, version string) {
	if spec.Profile == "" {
		return "", ""
	}
	if spec.ProfileVersion == "" {
		return string(spec.Profile), LatestVersion
	}
	return string(spec.Profile), string(spec.ProfileVersion)
}

// ParseVersion reads v1.<minor> within the supported range.
func ParseVersion(v string) (int, error) {
	rest, ok := strings.CutPrefix(v, "v1.")
	minor, err := strconv.Atoi(rest)
	if !ok || err != nil || strconv.Itoa(minor) != rest {
		return 0, fmt.Errorf("profileVersion %q is not of the form v1.<minor>", v)
	}
	if minor < OldestMinor || minor > LatestMinor {
		return 0, fmt.Errorf("profileVersion %q is outside the supported range v1.%d to v1.%d", v, OldestMinor, LatestMinor)
	}
	return minor, nil
}

// EffectiveSpec returns a copy of spec with every feature the spec does not write filled in
// from its profile; a spec without a profile comes back unchanged (as a copy). It fails only
// on a profile or version the API would reject.
func EffectiveSpec(spec *v1alpha1.PodSecurityConstraintsSpec) (*v1alpha1.PodSecurityConstraintsSpec, error) {
	out := spec.DeepCopy()
	if spec.Profile == "" {
		return out, nil
	}
	_, version := Resolved(spec)
	minor, err := ParseVersion(version)
	if err != nil {
		return nil, err
	}
	var preset *v1alpha1.PodSecurityConstraintsSpec
	switch spec.Profile {
	case v1alpha1.ProfileBaseline:
		preset = Baseline(minor)
	case v1alpha1.ProfileRestricted:
		preset = Restricted(minor)
	default:
		return nil, fmt.Errorf("unknown profile %q: want baseline or restricted", spec.Profile)
	}
	fill(&out.PrivilegedContainers, preset.PrivilegedContainers)
	fill(&out.HostProcess, preset.HostProcess)
	fill(&out.HostNamespaces, preset.HostNamespaces)
	fill(&out.HostNetworking, preset.HostNetworking)
	fill(&out.ProbeHosts, preset.ProbeHosts)
	fill(&out.VolumeTypes, preset.VolumeTypes)
	fill(&out.HostFilesystem, preset.HostFilesystem)
	fill(&out.FlexVolumeDrivers, preset.FlexVolumeDrivers)
	fill(&out.ReadOnlyRootFilesystem, preset.ReadOnlyRootFilesystem)
	fill(&out.UsersAndGroups, preset.UsersAndGroups)
	fill(&out.PrivilegeEscalation, preset.PrivilegeEscalation)
	fill(&out.Capabilities, preset.Capabilities)
	fill(&out.SELinux, preset.SELinux)
	fill(&out.ProcMount, preset.ProcMount)
	fill(&out.AppArmor, preset.AppArmor)
	fill(&out.Seccomp, preset.Seccomp)
	fill(&out.Sysctls, preset.Sysctls)
	return out, nil
}

// fill sets a feature the spec does not write to the preset's block.
func fill[T any](dst **T, preset *T) {
	if *dst == nil {
		*dst = preset
	}
}

func on() v1alpha1.FeatureCommon { return v1alpha1.FeatureCommon{Enabled: true} }

func onC() v1alpha1.ContainerFeatureCommon {
	return v1alpha1.ContainerFeatureCommon{FeatureCommon: on()}
}

// Baseline is the Pod Security Standards baseline level of version v1.<minor>.
func Baseline(minor int) *v1alpha1.PodSecurityConstraintsSpec {
	s := &v1alpha1.PodSecurityConstraintsSpec{
		// HostProcess
		HostProcess: &v1alpha1.HostProcessFeature{ContainerFeatureCommon: onC()},
		// Host Namespaces
		HostNamespaces: &v1alpha1.HostNamespacesFeature{FeatureCommon: on()},
		// Host Namespaces (hostNetwork) and Host Ports
		HostNetworking: &v1alpha1.HostNetworkingFeature{ContainerFeatureCommon: onC()},
		// Privileged Containers
		PrivilegedContainers: &v1alpha1.PrivilegedContainersFeature{ContainerFeatureCommon: onC()},
		// Capabilities
		Capabilities: &v1alpha1.CapabilitiesFeature{
			ContainerFeatureCommon: onC(),
			AllowedCapabilities: []v1alpha1.Capability{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
				"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"},
		},
		// HostPath Volumes
		HostFilesystem: &v1alpha1.HostFilesystemFeature{FeatureCommon: on()},
		// AppArmor
		AppArmor: &v1alpha1.AppArmorFeature{
			ContainerFeatureCommon: onC(),
			AllowedProfiles:        []v1alpha1.AppArmorProfile{"runtime/default", "localhost/*"},
		},
		// SELinux
		SELinux: &v1alpha1.SELinuxFeature{ContainerFeatureCommon: onC(), AllowedSELinuxOptions: seLinuxTypes(minor)},
		// /proc Mount Type
		ProcMount: &v1alpha1.ProcMountFeature{
			ContainerFeatureCommon:  onC(),
			ProcMount:               "Default",
			ExemptUserNamespacePods: minor >= 35,
		},
		// Seccomp
		Seccomp: &v1alpha1.SeccompFeature{
			ContainerFeatureCommon: onC(),
			AllowedProfiles:        []v1alpha1.SeccompProfileType{"RuntimeDefault", "Localhost"},
			AllowedLocalhostFiles:  []v1alpha1.LocalhostProfileFile{"*"},
			AllowUnset:             true,
		},
		// Sysctls
		Sysctls: &v1alpha1.SysctlsFeature{FeatureCommon: on(), AllowedSysctls: SafeSysctls(minor)},
	}
	// Probes and lifecycle handlers' host, from v1.34.
	if minor >= 34 {
		s.ProbeHosts = &v1alpha1.ProbeHostsFeature{ContainerFeatureCommon: onC()}
	}
	return s
}

// Restricted is the Pod Security Standards restricted level of version v1.<minor>: baseline
// plus its own controls, some of which replace baseline's.
func Restricted(minor int) *v1alpha1.PodSecurityConstraintsSpec {
	s := Baseline(minor)
	// Volume Types
	s.VolumeTypes = &v1alpha1.VolumeTypesFeature{
		FeatureCommon: on(),
		Allowed: []v1alpha1.VolumeType{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
			"persistentVolumeClaim", "projected", "secret"},
	}
	// Privilege Escalation
	s.PrivilegeEscalation = &v1alpha1.PrivilegeEscalationFeature{ContainerFeatureCommon: onC()}
	// Running as Non-root, Running as Non-root user (relaxed for user namespaces from v1.35)
	s.UsersAndGroups = &v1alpha1.UsersAndGroupsFeature{
		ContainerFeatureCommon:  onC(),
		RunAsUser:               &v1alpha1.RunAsUserStrategy{Rule: v1alpha1.RuleMustRunAsNonRoot},
		RunAsNonRoot:            v1alpha1.RunAsNonRootRequired,
		ExemptUserNamespacePods: minor >= 35,
	}
	// Seccomp: a profile is required.
	s.Seccomp.AllowUnset = false
	// Capabilities: drop ALL, add only NET_BIND_SERVICE.
	s.Capabilities = &v1alpha1.CapabilitiesFeature{
		ContainerFeatureCommon:   onC(),
		AllowedCapabilities:      []v1alpha1.Capability{"NET_BIND_SERVICE"},
		RequiredDropCapabilities: []v1alpha1.Capability{"ALL"},
	}
	// /proc Mount Type: restricted allows only Default, user namespace or not (v1.35).
	s.ProcMount.ExemptUserNamespacePods = false
	return s
}

// seLinuxTypes: type from the standard set or unset, user and role unset, any level.
func seLinuxTypes(minor int) []v1alpha1.SELinuxOptions {
	types := []string{"container_t", "container_init_t", "container_kvm_t"}
	if minor >= 31 {
		types = append(types, "container_engine_t")
	}
	out := []v1alpha1.SELinuxOptions{{Level: "*"}}
	for _, t := range types {
		out = append(out, v1alpha1.SELinuxOptions{Type: t, Level: "*"})
	}
	return out
}

// SafeSysctls is the safe sysctl set of Pod Security Standards v1.<minor>.
func SafeSysctls(minor int) []v1alpha1.SysctlPattern {
	out := []v1alpha1.SysctlPattern{"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
		"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}
	if minor >= 27 {
		out = append(out, "net.ipv4.ip_local_reserved_ports")
	}
	if minor >= 29 {
		out = append(out, "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
			"net.ipv4.tcp_keepalive_probes")
	}
	if minor >= 32 {
		out = append(out, "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")
	}
	return out
}
