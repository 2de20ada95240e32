// Package pspconvert converts PodSecurityPolicy objects (policy/v1beta1, removed in Kubernetes
// 1.25) into the equivalent PodSecurityConstraints, with a YAML comment on everything that
// cannot be expressed.
package pspconvert

// The PodSecurityPolicy API, as far as the converter reads it. k8s.io/api no longer carries
// these types since the API was removed; field names follow policy/v1beta1.

type podSecurityPolicy struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata"`
	Spec pspSpec `json:"spec"`
}

type pspSpec struct {
	Privileged                      bool                   `json:"privileged,omitempty"`
	DefaultAddCapabilities          []string               `json:"defaultAddCapabilities,omitempty"`
	RequiredDropCapabilities        []string               `json:"requiredDropCapabilities,omitempty"`
	AllowedCapabilities             []string               `json:"allowedCapabilities,omitempty"`
	Volumes                         []string               `json:"volumes,omitempty"`
	HostNetwork                     bool                   `json:"hostNetwork,omitempty"`
	HostPorts                       []pspRange             `json:"hostPorts,omitempty"`
	HostPID                         bool                   `json:"hostPID,omitempty"`
	HostIPC                         bool                   `json:"hostIPC,omitempty"`
	SELinux                         *pspSELinux            `json:"seLinux,omitempty"`
	RunAsUser                       *pspStrategy           `json:"runAsUser,omitempty"`
	RunAsGroup                      *pspStrategy           `json:"runAsGroup,omitempty"`
	SupplementalGroups              *pspStrategy           `json:"supplementalGroups,omitempty"`
	FSGroup                         *pspStrategy           `json:"fsGroup,omitempty"`
	ReadOnlyRootFilesystem          bool                   `json:"readOnlyRootFilesystem,omitempty"`
	DefaultAllowPrivilegeEscalation *bool                  `json:"defaultAllowPrivilegeEscalation,omitempty"`
	AllowPrivilegeEscalation        *bool                  `json:"allowPrivilegeEscalation,omitempty"`
	AllowedHostPaths                []pspHostPath          `json:"allowedHostPaths,omitempty"`
	AllowedFlexVolumes              []pspFlexVolume        `json:"allowedFlexVolumes,omitempty"`
	AllowedCSIDrivers               []map[string]any       `json:"allowedCSIDrivers,omitempty"`
	AllowedUnsafeSysctls            []string               `json:"allowedUnsafeSysctls,omitempty"`
	ForbiddenSysctls                []string               `json:"forbiddenSysctls,omitempty"`
	AllowedProcMountTypes           []string               `json:"allowedProcMountTypes,omitempty"`
	RuntimeClass                    map[string]interface{} `json:"runtimeClass,omitempty"`
}

type pspRange struct {
	Min int64 `json:"min"`
	Max int64 `json:"max"`
}

type pspSELinux struct {
	Rule           string `json:"rule"`
	SELinuxOptions *struct {
		User  string `json:"user,omitempty"`
		Role  string `json:"role,omitempty"`
		Type  string `json:"type,omitempty"`
		Level string `json:"level,omitempty"`
	} `json:"seLinuxOptions,omitempty"`
}

type pspStrategy struct {
	Rule   string     `json:"rule"`
	Ranges []pspRange `json:"ranges,omitempty"`
}

type pspHostPath struct {
	PathPrefix string `json:"pathPrefix"`
	ReadOnly   bool   `json:"readOnly,omitempty"`
}

type pspFlexVolume struct {
	Driver string `json:"driver"`
}

// PodSecurityPolicy annotations for seccomp and AppArmor.
const (
	seccompAllowedAnnotation  = "seccomp.security.alpha.kubernetes.io/allowedProfileNames"
	seccompDefaultAnnotation  = "seccomp.security.alpha.kubernetes.io/defaultProfileName"
	appArmorAllowedAnnotation = "apparmor.security.beta.kubernetes.io/allowedProfileNames"
	appArmorDefaultAnnotation = "apparmor.security.beta.kubernetes.io/defaultProfileName"
)
