package profiles_test

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	psapolicy "k8s.io/pod-security-admission/policy"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/profiles"
)

// The presets must know exactly the versions of the bundled Pod Security Admission library: a
// bump of the library that adds a check version fails here until the presets learn it.
func TestLatestVersionIsTheLibrarys(t *testing.T) {
	newest := 0
	for _, c := range psapolicy.DefaultChecks() {
		for _, v := range c.Versions {
			if v.MinimumVersion.Major() != 1 {
				t.Fatalf("check %s has version %s", c.ID, v.MinimumVersion)
			}
			newest = max(newest, v.MinimumVersion.Minor())
		}
	}
	if newest != profiles.LatestMinor {
		t.Errorf("k8s.io/pod-security-admission's newest check version is v1.%d, the presets know up to v1.%d", newest, profiles.LatestMinor)
	}
}

func TestEffectiveSpec(t *testing.T) {
	disabled := &v1alpha1.HostNamespacesFeature{FeatureCommon: v1alpha1.FeatureCommon{Enabled: false}}
	ownSeccomp := &v1alpha1.SeccompFeature{
		ContainerFeatureCommon: v1alpha1.ContainerFeatureCommon{FeatureCommon: v1alpha1.FeatureCommon{Enabled: true}},
		AllowedProfiles:        []v1alpha1.SeccompProfileType{"RuntimeDefault"},
	}
	tests := []struct {
		name  string
		spec  v1alpha1.PodSecurityConstraintsSpec
		check func(t *testing.T, got *v1alpha1.PodSecurityConstraintsSpec)
		err   string
	}{
		{
			name: "no profile: the spec unchanged",
			spec: v1alpha1.PodSecurityConstraintsSpec{HostNamespaces: disabled},
			check: func(t *testing.T, got *v1alpha1.PodSecurityConstraintsSpec) {
				if got.HostNamespaces != disabled && got.HostNamespaces.Enabled || got.PrivilegedContainers != nil || got.Seccomp != nil {
					t.Errorf("features filled in without a profile: %+v", got)
				}
			},
		},
		{
			name: "baseline latest fills baseline controls only",
			spec: v1alpha1.PodSecurityConstraintsSpec{Profile: v1alpha1.ProfileBaseline},
			check: func(t *testing.T, got *v1alpha1.PodSecurityConstraintsSpec) {
				for name, on := range map[string]bool{
					"privilegedContainers": got.PrivilegedContainers != nil, "hostProcess": got.HostProcess != nil,
					"hostNamespaces": got.HostNamespaces != nil, "hostNetworking": got.HostNetworking != nil,
					"probeHosts": got.ProbeHosts != nil, "hostFilesystem": got.HostFilesystem != nil,
					"capabilities": got.Capabilities != nil, "seLinux": got.SELinux != nil, "procMount": got.ProcMount != nil,
					"appArmor": got.AppArmor != nil, "seccomp": got.Seccomp != nil, "sysctls": got.Sysctls != nil,
				} {
					if !on {
						t.Errorf("baseline does not fill %s", name)
					}
				}
				if got.VolumeTypes != nil || got.PrivilegeEscalation != nil || got.UsersAndGroups != nil || got.ReadOnlyRootFilesystem != nil || got.FlexVolumeDrivers != nil {
					t.Error("baseline fills a restricted-only or non-PSS feature")
				}
				if !got.Seccomp.AllowUnset || !got.ProcMount.ExemptUserNamespacePods || len(got.Sysctls.AllowedSysctls) != 12 || len(got.SELinux.AllowedSELinuxOptions) != 5 {
					t.Errorf("baseline v1.35 settings: seccomp %+v procMount %+v sysctls %d seLinux %d", got.Seccomp, got.ProcMount, len(got.Sysctls.AllowedSysctls), len(got.SELinux.AllowedSELinuxOptions))
				}
			},
		},
		{
			name: "restricted v1.29: no probe hosts, no user-namespace relaxation, v1.29 sysctls, no container_engine_t",
			spec: v1alpha1.PodSecurityConstraintsSpec{Profile: v1alpha1.ProfileRestricted, ProfileVersion: "v1.29"},
			check: func(t *testing.T, got *v1alpha1.PodSecurityConstraintsSpec) {
				if got.ProbeHosts != nil {
					t.Error("probe hosts are baseline only from v1.34")
				}
				if got.UsersAndGroups.ExemptUserNamespacePods || got.ProcMount.ExemptUserNamespacePods {
					t.Error("user namespace relaxations are v1.35")
				}
				if n := len(got.Sysctls.AllowedSysctls); n != 10 {
					t.Errorf("v1.29 has 10 safe sysctls, got %d", n)
				}
				if n := len(got.SELinux.AllowedSELinuxOptions); n != 4 {
					t.Errorf("v1.29 allows 3 SELinux types plus none, got %d entries", n)
				}
				if got.Seccomp.AllowUnset || got.UsersAndGroups.RunAsNonRoot != v1alpha1.RunAsNonRootRequired ||
					len(got.Capabilities.RequiredDropCapabilities) != 1 || got.PrivilegeEscalation == nil || got.VolumeTypes == nil {
					t.Errorf("restricted settings missing: %+v", got)
				}
			},
		},
		{
			name: "restricted latest: runAsNonRoot relaxed for user namespaces, procMount not",
			spec: v1alpha1.PodSecurityConstraintsSpec{Profile: v1alpha1.ProfileRestricted},
			check: func(t *testing.T, got *v1alpha1.PodSecurityConstraintsSpec) {
				if !got.UsersAndGroups.ExemptUserNamespacePods || got.ProcMount.ExemptUserNamespacePods {
					t.Errorf("usersAndGroups %+v procMount %+v", got.UsersAndGroups, got.ProcMount)
				}
			},
		},
		{
			name: "an explicit block replaces the preset's entirely, enabled false opts out",
			spec: v1alpha1.PodSecurityConstraintsSpec{Profile: v1alpha1.ProfileBaseline, HostNamespaces: disabled, Seccomp: ownSeccomp},
			check: func(t *testing.T, got *v1alpha1.PodSecurityConstraintsSpec) {
				if got.HostNamespaces.Enabled {
					t.Error("hostNamespaces enabled: false was overridden by the preset")
				}
				if got.Seccomp.AllowUnset || len(got.Seccomp.AllowedLocalhostFiles) != 0 || len(got.Seccomp.AllowedProfiles) != 1 {
					t.Errorf("seccomp merged field by field instead of replaced: %+v", got.Seccomp)
				}
			},
		},
		{name: "version below range", spec: v1alpha1.PodSecurityConstraintsSpec{Profile: v1alpha1.ProfileBaseline, ProfileVersion: "v1.24"}, err: "outside the supported range"},
		{name: "version above range", spec: v1alpha1.PodSecurityConstraintsSpec{Profile: v1alpha1.ProfileBaseline, ProfileVersion: "v1.36"}, err: "outside the supported range"},
		{name: "version malformed", spec: v1alpha1.PodSecurityConstraintsSpec{Profile: v1alpha1.ProfileBaseline, ProfileVersion: "1.30"}, err: "not of the form"},
		{name: "unknown profile", spec: v1alpha1.PodSecurityConstraintsSpec{Profile: "privileged"}, err: "unknown profile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.spec.DeepCopy()
			got, err := profiles.EffectiveSpec(&tc.spec)
			if tc.err != "" {
				if err == nil || !contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, got)
			if !equality.Semantic.DeepEqual(before, &tc.spec) {
				t.Error("EffectiveSpec modified its input")
			}
		})
	}
}

// Every preset, at every version, is a spec the CRD accepts.
func TestPresetsAreValid(t *testing.T) {
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	for minor := profiles.OldestMinor; minor <= profiles.LatestMinor; minor++ {
		for _, profile := range []v1alpha1.Profile{v1alpha1.ProfileBaseline, v1alpha1.ProfileRestricted} {
			spec := v1alpha1.PodSecurityConstraintsSpec{Profile: profile, ProfileVersion: v1alpha1.ProfileVersion(fmt.Sprintf("v1.%d", minor))}
			eff, err := profiles.EffectiveSpec(&spec)
			if err != nil {
				t.Fatalf("%s v1.%d: %v", profile, minor, err)
			}
			obj := &v1alpha1.PodSecurityConstraints{Spec: *eff}
			obj.Name = v1alpha1.ClusterName
			if errs := v.Validate(context.Background(), obj); len(errs) > 0 {
				t.Errorf("%s v1.%d is not a valid spec: %v", profile, minor, errs.ToAggregate())
			}
		}
	}
}

func TestResolved(t *testing.T) {
	for _, tc := range []struct {
		spec             v1alpha1.PodSecurityConstraintsSpec
		profile, version string
	}{
		{spec: v1alpha1.PodSecurityConstraintsSpec{}},
		{spec: v1alpha1.PodSecurityConstraintsSpec{Profile: "baseline"}, profile: "baseline", version: "v1.35"},
		{spec: v1alpha1.PodSecurityConstraintsSpec{Profile: "restricted", ProfileVersion: "v1.27"}, profile: "restricted", version: "v1.27"},
	} {
		p, v := profiles.Resolved(&tc.spec)
		if p != tc.profile || v != tc.version {
			t.Errorf("Resolved(%+v) = %q, %q; want %q, %q", tc.spec, p, v, tc.profile, tc.version)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}
