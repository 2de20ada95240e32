package v1alpha1

// ClusterName is the only name a PodSecurityConstraints object may have: there is one per
// cluster.
const ClusterName = "cluster"

// EnforcementAction is what Gatekeeper does with a violation.
// +kubebuilder:validation:Enum=deny;warn;dryrun
type EnforcementAction string

const (
	// EnforcementDeny rejects the request.
	EnforcementDeny EnforcementAction = "deny"
	// EnforcementWarn admits the request and returns a warning to the client.
	EnforcementWarn EnforcementAction = "warn"
	// EnforcementDryRun admits the request silently; violations show up in audit results only.
	EnforcementDryRun EnforcementAction = "dryrun"
)

// NamespacePattern is a namespace name, or a prefix followed by "*" (for example "kube-*").
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?|[a-z0-9][-a-z0-9]*[*])$')",message="must be a namespace name (lower-case letters, digits and '-') or a prefix ending in '*', such as kube-*"
type NamespacePattern string

// ImagePattern is a container image reference; a trailing "*" matches every image that starts
// with what comes before it (for example "registry.example.com/debug/*").
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=512
// +kubebuilder:validation:XValidation:rule="self.matches('^[^*[:space:]]+[*]?$')",message="must be an image reference without spaces; '*' is allowed only at the end, after at least one character"
type ImagePattern string

// Profile is a Pod Security Standards level.
// +kubebuilder:validation:Enum=baseline;restricted
type Profile string

const (
	// ProfileBaseline prevents known privilege escalations.
	ProfileBaseline Profile = "baseline"
	// ProfileRestricted adds the hardening best practices on top of baseline.
	ProfileRestricted Profile = "restricted"
)

// ProfileVersion is a Pod Security Standards version, v1.<minor>.
// +kubebuilder:validation:MaxLength=8
// +kubebuilder:validation:XValidation:rule="self.matches('^v1[.][0-9]+$') && int(self.substring(3)) >= 25 && int(self.substring(3)) <= 35",message="must be a Pod Security Standards version from v1.25 to v1.35, such as v1.29"
type ProfileVersion string

// PodSecurityConstraintsSpec holds the cluster's pod security features. Each feature is off
// unless its block is present with enabled: true, or a profile fills it in.
// +kubebuilder:validation:XValidation:rule="!has(self.profileVersion) || has(self.profile)",message="profileVersion needs a profile"
type PodSecurityConstraintsSpec struct {
	// Enabled is the master switch. false keeps the configuration but removes every policy the
	// operator generated. Default true.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// EnforcementAction applies to every feature that does not set its own: deny rejects
	// violating pods, warn admits them with a warning, dryrun only reports them in the audit
	// results. Default deny.
	// +kubebuilder:default=deny
	// +optional
	EnforcementAction EnforcementAction `json:"enforcementAction,omitempty"`

	// ExcludedNamespaces are never checked by any feature. Entries are namespace names or
	// prefixes ending in "*". Default [kube-system]. The operator's own namespace and
	// Gatekeeper's namespace are always excluded as well.
	// +kubebuilder:default={"kube-system"}
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	ExcludedNamespaces []NamespacePattern `json:"excludedNamespaces,omitempty"`

	// ExemptImages lists images that container-level features skip (a trailing "*" is a prefix
	// match). Pod-level checks (host namespaces, volumes, sysctls, ...) still apply.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	ExemptImages []ImagePattern `json:"exemptImages,omitempty"`

	// Profile fills in every feature this spec does not write with the settings of a Pod
	// Security Standards level: baseline or restricted. A feature block written here replaces
	// the profile's block for that feature entirely (enabled: false switches one control off).
	// +optional
	Profile Profile `json:"profile,omitempty"`

	// ProfileVersion pins the Pod Security Standards version the profile follows, from v1.25 to
	// v1.35. Default: the latest this operator knows (v1.35).
	// +optional
	ProfileVersion ProfileVersion `json:"profileVersion,omitempty"`

	// SetDefaults makes the features that have a field to default fill it in on pods that
	// leave it unset, as PodSecurityPolicy did, through Gatekeeper mutators (Assign,
	// ModifySet) instead of denying the pod: readOnlyRootFilesystem, privilegeEscalation,
	// capabilities, seccomp, appArmor, usersAndGroups and seLinux. A value a pod sets is never
	// changed, so a pod that asks for something forbidden is still denied. Pods are defaulted
	// when they are created and when a workload is judged as the pod it would create;
	// ephemeral containers (kubectl debug) are checked, never defaulted. Needs Gatekeeper's
	// mutation webhook. A feature's own setDefaults overrides this. A feature with
	// exemptImages (its own or spec.exemptImages) does not follow this: a mutator cannot leave
	// a container out by its image, so its defaults are withheld (status.features[].defaults:
	// Withheld) until its own setDefaults is true or false. Default false.
	// +kubebuilder:default=false
	// +optional
	SetDefaults *bool `json:"setDefaults,omitempty"`

	// PrivilegedContainers denies containers that set securityContext.privileged: true.
	// +optional
	PrivilegedContainers *PrivilegedContainersFeature `json:"privilegedContainers,omitempty"`

	// HostProcess denies Windows HostProcess containers (securityContext.windowsOptions.hostProcess:
	// true on the pod or a container).
	// +optional
	HostProcess *HostProcessFeature `json:"hostProcess,omitempty"`

	// HostNamespaces denies pods that share the host's PID or IPC namespace.
	// +optional
	HostNamespaces *HostNamespacesFeature `json:"hostNamespaces,omitempty"`

	// HostNetworking controls the host network namespace and host ports.
	// +optional
	HostNetworking *HostNetworkingFeature `json:"hostNetworking,omitempty"`

	// ProbeHosts restricts the host field of probes and lifecycle handlers (httpGet.host,
	// tcpSocket.host): unset, or one of allowedHosts.
	// +optional
	ProbeHosts *ProbeHostsFeature `json:"probeHosts,omitempty"`

	// VolumeTypes restricts the volume sources pods may use.
	// +optional
	VolumeTypes *VolumeTypesFeature `json:"volumeTypes,omitempty"`

	// HostFilesystem restricts hostPath volumes to allowed path prefixes.
	// +optional
	HostFilesystem *HostFilesystemFeature `json:"hostFilesystem,omitempty"`

	// FlexVolumeDrivers restricts flexVolume volumes to allowed drivers.
	// +optional
	FlexVolumeDrivers *FlexVolumeDriversFeature `json:"flexVolumeDrivers,omitempty"`

	// ReadOnlyRootFilesystem requires every container to run with a read-only root filesystem.
	// +optional
	ReadOnlyRootFilesystem *ReadOnlyRootFilesystemFeature `json:"readOnlyRootFilesystem,omitempty"`

	// UsersAndGroups restricts the user and group IDs pods and containers run as.
	// +optional
	UsersAndGroups *UsersAndGroupsFeature `json:"usersAndGroups,omitempty"`

	// PrivilegeEscalation requires every container to set allowPrivilegeEscalation: false.
	// +optional
	PrivilegeEscalation *PrivilegeEscalationFeature `json:"privilegeEscalation,omitempty"`

	// Capabilities restricts the Linux capabilities containers add and requires some to be
	// dropped.
	// +optional
	Capabilities *CapabilitiesFeature `json:"capabilities,omitempty"`

	// SELinux restricts the SELinux options pods and containers set.
	// +optional
	SELinux *SELinuxFeature `json:"seLinux,omitempty"`

	// ProcMount restricts the /proc mount type of containers.
	// +optional
	ProcMount *ProcMountFeature `json:"procMount,omitempty"`

	// AppArmor restricts the AppArmor profiles containers run under.
	// +optional
	AppArmor *AppArmorFeature `json:"appArmor,omitempty"`

	// Seccomp restricts the seccomp profiles containers run under.
	// +optional
	Seccomp *SeccompFeature `json:"seccomp,omitempty"`

	// Sysctls restricts the sysctls pods set.
	// +optional
	Sysctls *SysctlsFeature `json:"sysctls,omitempty"`

	// Workloads makes every enabled feature judge workloads (Deployments, StatefulSets, Jobs,
	// ...) at apply time as the Pods they would create, so that `kubectl apply` of a violating
	// Deployment fails at once instead of its ReplicaSet failing to create Pods later. On by
	// default; needs Gatekeeper's generator resource expansion (ExpansionTemplate).
	// +kubebuilder:default={enabled: true}
	// +optional
	Workloads *Workloads `json:"workloads,omitempty"`

	// ValidatingAdmissionPolicy makes the API server itself enforce every enabled feature as
	// well, through the ValidatingAdmissionPolicy and binding Gatekeeper generates from each
	// feature's CEL code (Kubernetes 1.30 or later, Gatekeeper with its generate operation).
	// Pods are then still checked while Gatekeeper is down; workloads stay checked at apply
	// time by Gatekeeper's webhook only. Off by default.
	// +optional
	ValidatingAdmissionPolicy *ValidatingAdmissionPolicy `json:"validatingAdmissionPolicy,omitempty"`
}

// ValidatingAdmissionPolicy configures enforcement by the API server itself.
type ValidatingAdmissionPolicy struct {
	// Enabled makes Gatekeeper generate, for every enabled feature, a ValidatingAdmissionPolicy
	// (gatekeeper-psc<feature>) and a binding for its constraint, which the API server
	// evaluates before calling any webhook. A feature in deny is denied there (one message:
	// the API server stops at the first denial); in dryrun the binding audits (API server audit
	// annotations); in warn no binding is made, the webhook warns (a warning from both would be
	// given twice). kube-system and the admission probe's namespace are then excluded from every
	// feature, in addition to the operator's and Gatekeeper's namespaces, so that the API server
	// can never lock them out. Default false.
	// +kubebuilder:default=false
	// +optional
	Enabled bool `json:"enabled,omitempty"`
}

// Workloads configures how workloads are judged as the Pods they would create.
type Workloads struct {
	// Enabled checks the built-in workload kinds (apps/v1 Deployment, ReplicaSet, StatefulSet,
	// DaemonSet; batch/v1 Job, CronJob; v1 ReplicationController) and the extraKinds against
	// every enabled feature. Default true.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// EnforcementAction, when set, replaces the action of every result on a workload (warn
	// admits a violating Deployment with a warning); the Pods themselves keep each feature's
	// own action. Unset: a workload gets the same action as its Pods would.
	// +optional
	EnforcementAction EnforcementAction `json:"enforcementAction,omitempty"`

	// ExtraKinds are custom workload kinds whose objects embed a pod template, such as Argo
	// Rollouts (group argoproj.io, version v1alpha1, kind Rollout, templatePath
	// spec.template).
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=group
	// +listMapKey=kind
	// +optional
	ExtraKinds []WorkloadKind `json:"extraKinds,omitempty"`
}

// WorkloadKind is a custom kind whose objects embed a pod template.
// +kubebuilder:validation:XValidation:rule="!(self.group.size() == 0 && self.kind == 'Pod')",message="Pods are always checked; extraKinds lists kinds that embed a pod template"
// +kubebuilder:validation:XValidation:rule="!((self.group == 'apps' && self.kind in ['Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet']) || (self.group == 'batch' && self.kind in ['Job', 'CronJob']) || (self.group.size() == 0 && self.kind == 'ReplicationController'))",message="this kind is built in and checked already; list only other kinds"
type WorkloadKind struct {
	// Group is the kind's API group, such as argoproj.io ("" is the core group).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.size() == 0 || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must be an API group such as argoproj.io (lower-case DNS name), or empty for the core group"
	// +required
	Group string `json:"group"`

	// Version is the API version the workloads are checked at, such as v1alpha1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^v[0-9]+((alpha|beta)[0-9]+)?$')",message="must be an API version such as v1, v1beta1 or v1alpha2"
	// +required
	Version string `json:"version"`

	// Kind is the kind, such as Rollout.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Z][A-Za-z0-9]*$')",message="must be a kind name such as Rollout (starting with an upper-case letter, letters and digits only)"
	// +required
	Kind string `json:"kind"`

	// TemplatePath is the dot-separated path of the pod template (an object with metadata and
	// spec) within the object, such as spec.template. List indexes are not supported.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z_][A-Za-z0-9_]*)*$')",message="must be a dot-separated field path such as spec.template; list indexes and wildcards are not supported"
	// +required
	TemplatePath string `json:"templatePath"`
}

// FeatureCommon holds the settings every feature accepts.
type FeatureCommon struct {
	// Enabled switches the feature on.
	// +required
	Enabled bool `json:"enabled"`

	// EnforcementAction overrides spec.enforcementAction for this feature.
	// +optional
	EnforcementAction EnforcementAction `json:"enforcementAction,omitempty"`

	// ExcludedNamespaces are excluded from this feature in addition to
	// spec.excludedNamespaces.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	ExcludedNamespaces []NamespacePattern `json:"excludedNamespaces,omitempty"`
}

// ContainerFeatureCommon holds the settings of features whose checks look at each container.
type ContainerFeatureCommon struct {
	FeatureCommon `json:",inline"`

	// ExemptImages are skipped by this feature's container checks, in addition to
	// spec.exemptImages.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	ExemptImages []ImagePattern `json:"exemptImages,omitempty"`
}

// FeatureDefaults is held by the features that can fill in a field a pod leaves unset.
type FeatureDefaults struct {
	// SetDefaults overrides spec.setDefaults for this feature: true fills in the fields this
	// feature requires where a pod leaves them unset, in every container including those of
	// exempt images; false only checks them. Unset: follow spec.setDefaults, except that a
	// feature with exemptImages (its own or spec.exemptImages) then gets no defaults
	// (status.features[].defaults: Withheld).
	// +optional
	SetDefaults *bool `json:"setDefaults,omitempty"`
}

// PrivilegedContainersFeature denies privileged containers.
type PrivilegedContainersFeature struct {
	ContainerFeatureCommon `json:",inline"`
}

// HostProcessFeature denies Windows HostProcess containers.
type HostProcessFeature struct {
	ContainerFeatureCommon `json:",inline"`
}

// ProbeHostsFeature restricts the hosts probes and lifecycle handlers connect to.
type ProbeHostsFeature struct {
	ContainerFeatureCommon `json:",inline"`

	// AllowedHosts are the hosts (compared exactly) that httpGet.host and tcpSocket.host of
	// probes and lifecycle handlers may name. Empty: the host must be unset, so the kubelet
	// connects to the pod's own IP.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	AllowedHosts []string `json:"allowedHosts,omitempty"`
}

// HostNamespacesFeature denies hostPID and hostIPC.
type HostNamespacesFeature struct {
	FeatureCommon `json:",inline"`
}

// HostNetworkingFeature controls hostNetwork and hostPort.
type HostNetworkingFeature struct {
	ContainerFeatureCommon `json:",inline"`

	// AllowHostNetwork admits pods that set hostNetwork: true. Default false.
	// +optional
	AllowHostNetwork bool `json:"allowHostNetwork,omitempty"`

	// HostPorts are the port ranges containers may bind on the host. Empty: no host ports.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	HostPorts []PortRange `json:"hostPorts,omitempty"`
}

// PortRange is an inclusive range of ports.
// +kubebuilder:validation:XValidation:rule="self.min <= self.max",message="min must not be greater than max"
type PortRange struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	// +required
	Min int32 `json:"min"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	// +required
	Max int32 `json:"max"`
}

// VolumeType is the name of a volume source field of a Pod's volume, or "*" for all of them.
// +kubebuilder:validation:Enum="*";awsElasticBlockStore;azureDisk;azureFile;cephfs;cinder;configMap;csi;downwardAPI;emptyDir;ephemeral;fc;flexVolume;flocker;gcePersistentDisk;gitRepo;glusterfs;hostPath;image;iscsi;nfs;persistentVolumeClaim;photonPersistentDisk;portworxVolume;projected;quobyte;rbd;scaleIO;secret;storageos;vsphereVolume
type VolumeType string

// VolumeTypesFeature restricts volume sources.
type VolumeTypesFeature struct {
	FeatureCommon `json:",inline"`

	// Allowed lists the volume sources pods may use; "*" allows all.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Allowed []VolumeType `json:"allowed,omitempty"`
}

// HostFilesystemFeature restricts hostPath volumes.
type HostFilesystemFeature struct {
	FeatureCommon `json:",inline"`

	// AllowedHostPaths are the host path prefixes hostPath volumes may use. Empty: no
	// hostPath volumes at all.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	AllowedHostPaths []AllowedHostPath `json:"allowedHostPaths,omitempty"`
}

// AllowedHostPath is a host path prefix, matched by whole path segments.
type AllowedHostPath struct {
	// PathPrefix is an absolute path without '..' segments; /var/log allows /var/log and
	// /var/log/app, not /var/logs.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="must be an absolute path starting with '/'"
	// +kubebuilder:validation:XValidation:rule="!self.matches('(^|/)[.][.](/|$)')",message="must not contain '..' path segments: a prefix such as /var/log/../../etc would allow another directory than it names"
	// +required
	PathPrefix string `json:"pathPrefix"`

	// ReadOnly requires every mount of a matching volume to be read-only.
	// +optional
	ReadOnly bool `json:"readOnly,omitempty"`
}

// FlexVolumeDriversFeature restricts flexVolume drivers.
type FlexVolumeDriversFeature struct {
	FeatureCommon `json:",inline"`

	// AllowedDrivers lists the flexVolume drivers pods may use. Empty: no flexVolume at all.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	AllowedDrivers []string `json:"allowedDrivers,omitempty"`
}

// ReadOnlyRootFilesystemFeature requires read-only root filesystems. With setDefaults, containers
// that leave securityContext.readOnlyRootFilesystem unset get true.
type ReadOnlyRootFilesystemFeature struct {
	ContainerFeatureCommon `json:",inline"`
	FeatureDefaults        `json:",inline"`
}

// UsersAndGroupsFeature restricts user and group IDs. A rule that is not set is not checked. With
// setDefaults, MustRunAsNonRoot sets the pod's runAsNonRoot: true, and MustRunAs sets the pod's
// runAsUser, runAsGroup and fsGroup to the first range's min and supplementalGroups to [that min],
// each only where the pod leaves it unset.
type UsersAndGroupsFeature struct {
	ContainerFeatureCommon `json:",inline"`
	FeatureDefaults        `json:",inline"`

	// RunAsUser checks the effective runAsUser of each container.
	// +optional
	RunAsUser *RunAsUserStrategy `json:"runAsUser,omitempty"`

	// RunAsGroup checks the effective runAsGroup of each container.
	// +optional
	RunAsGroup *GroupStrategy `json:"runAsGroup,omitempty"`

	// SupplementalGroups checks the pod's supplementalGroups.
	// +optional
	SupplementalGroups *GroupStrategy `json:"supplementalGroups,omitempty"`

	// FSGroup checks the pod's fsGroup.
	// +optional
	FSGroup *GroupStrategy `json:"fsGroup,omitempty"`

	// RunAsNonRoot Required: every container must run with runAsNonRoot: true (its own or the
	// pod's), and neither the pod nor a container may set it to false; a non-zero runAsUser
	// alone does not satisfy it (Pod Security Standards restricted). Absent: not checked.
	// +optional
	RunAsNonRoot RunAsNonRootRule `json:"runAsNonRoot,omitempty"`

	// ExemptUserNamespacePods skips the runAsUser MustRunAsNonRoot and runAsNonRoot checks for
	// pods with hostUsers: false, whose root user is not root on the node (Pod Security
	// Standards restricted, v1.35 and later). Default false.
	// +optional
	ExemptUserNamespacePods bool `json:"exemptUserNamespacePods,omitempty"`
}

// RunAsNonRootRule is how runAsNonRoot is checked.
// +kubebuilder:validation:Enum=Required
type RunAsNonRootRule string

// RunAsNonRootRequired requires runAsNonRoot: true.
const RunAsNonRootRequired RunAsNonRootRule = "Required"

// RunAsUserRule is how runAsUser is checked.
// +kubebuilder:validation:Enum=MustRunAs;MustRunAsNonRoot;RunAsAny
type RunAsUserRule string

// GroupRule is how a group ID is checked.
// +kubebuilder:validation:Enum=MustRunAs;MayRunAs;RunAsAny
type GroupRule string

// Rule values.
const (
	RuleMustRunAs        = "MustRunAs"
	RuleMustRunAsNonRoot = "MustRunAsNonRoot"
	RuleMayRunAs         = "MayRunAs"
	RuleRunAsAny         = "RunAsAny"
)

// RunAsUserStrategy checks user IDs.
// +kubebuilder:validation:XValidation:rule="self.rule != 'MustRunAs' || (has(self.ranges) && size(self.ranges) > 0)",message="rule MustRunAs requires at least one range"
// +kubebuilder:validation:XValidation:rule="self.rule == 'MustRunAs' || !has(self.ranges) || size(self.ranges) == 0",message="ranges are only used with rule MustRunAs"
type RunAsUserStrategy struct {
	// Rule: MustRunAs (an ID inside ranges), MustRunAsNonRoot (runAsNonRoot or a non-zero
	// ID), RunAsAny (no check).
	// +required
	Rule RunAsUserRule `json:"rule"`

	// Ranges are the allowed IDs, inclusive.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Ranges []IDRange `json:"ranges,omitempty"`
}

// GroupStrategy checks group IDs.
// +kubebuilder:validation:XValidation:rule="!(self.rule in ['MustRunAs', 'MayRunAs']) || (has(self.ranges) && size(self.ranges) > 0)",message="rules MustRunAs and MayRunAs require at least one range"
// +kubebuilder:validation:XValidation:rule="self.rule != 'RunAsAny' || !has(self.ranges) || size(self.ranges) == 0",message="ranges are not used with rule RunAsAny"
type GroupStrategy struct {
	// Rule: MustRunAs (an ID must be set and inside ranges), MayRunAs (IDs that are set
	// must be inside ranges), RunAsAny (no check).
	// +required
	Rule GroupRule `json:"rule"`

	// Ranges are the allowed IDs, inclusive.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Ranges []IDRange `json:"ranges,omitempty"`
}

// IDRange is an inclusive range of user or group IDs.
// +kubebuilder:validation:XValidation:rule="self.min <= self.max",message="min must not be greater than max"
type IDRange struct {
	// +kubebuilder:validation:Minimum=0
	// +required
	Min int64 `json:"min"`
	// +kubebuilder:validation:Minimum=0
	// +required
	Max int64 `json:"max"`
}

// PrivilegeEscalationFeature requires allowPrivilegeEscalation: false. With setDefaults, containers
// that leave securityContext.allowPrivilegeEscalation unset get false.
type PrivilegeEscalationFeature struct {
	ContainerFeatureCommon `json:",inline"`
	FeatureDefaults        `json:",inline"`
}

// Capability is a Linux capability name without the CAP_ prefix, such as NET_BIND_SERVICE.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule="!self.startsWith('CAP_')",message="write capabilities without the CAP_ prefix, e.g. NET_ADMIN instead of CAP_NET_ADMIN"
// +kubebuilder:validation:XValidation:rule="self == '*' || self.matches('^[A-Z][A-Z0-9_]*$')",message="must be an upper-case capability name of letters, digits and '_', such as NET_BIND_SERVICE, or '*'"
type Capability string

// CapabilitiesFeature restricts Linux capabilities. With setDefaults, every entry of
// requiredDropCapabilities is added to each container's securityContext.capabilities.drop where it
// is missing.
// +kubebuilder:validation:XValidation:rule="!has(self.allowedCapabilities) || !has(self.requiredDropCapabilities) || !self.allowedCapabilities.exists(c, c in self.requiredDropCapabilities)",message="a capability may not be both in allowedCapabilities and in requiredDropCapabilities"
// +kubebuilder:validation:XValidation:rule="!has(self.requiredDropCapabilities) || !self.requiredDropCapabilities.exists(c, c == '*')",message="requiredDropCapabilities may not contain '*'; use ALL to require dropping every capability"
type CapabilitiesFeature struct {
	ContainerFeatureCommon `json:",inline"`
	FeatureDefaults        `json:",inline"`

	// AllowedCapabilities are the capabilities containers may add; "*" allows any. Empty:
	// containers may not add capabilities.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	AllowedCapabilities []Capability `json:"allowedCapabilities,omitempty"`

	// RequiredDropCapabilities must all be dropped by every container; dropping ALL
	// satisfies any entry.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	RequiredDropCapabilities []Capability `json:"requiredDropCapabilities,omitempty"`
}

// SELinuxFeature restricts SELinux options. With setDefaults, when allowedSELinuxOptions has
// exactly one entry, pods without pod-level seLinuxOptions get that entry.
type SELinuxFeature struct {
	ContainerFeatureCommon `json:",inline"`
	FeatureDefaults        `json:",inline"`

	// AllowedSELinuxOptions: SELinux options that a pod or container sets must match one
	// entry; every field the pod sets must equal the entry's field, so a field the entry leaves
	// unset may not be set. "*" in a field matches any value, unset included: {type:
	// container_t, level: "*"} allows type container_t with any level. Empty: no SELinux
	// options may be set.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	AllowedSELinuxOptions []SELinuxOptions `json:"allowedSELinuxOptions,omitempty"`
}

// SELinuxOptions is an allowed combination of SELinux labels; "*" in a field matches any value
// of that field, including none.
// +kubebuilder:validation:XValidation:rule="has(self.level) || has(self.role) || has(self.type) || has(self.user)",message="set at least one of level, role, type and user"
type SELinuxOptions struct {
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Level string `json:"level,omitempty"`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Role string `json:"role,omitempty"`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Type string `json:"type,omitempty"`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	User string `json:"user,omitempty"`
}

// ProcMountType is a /proc mount type.
// +kubebuilder:validation:Enum=Default;Unmasked
type ProcMountType string

// ProcMountFeature restricts the /proc mount type.
type ProcMountFeature struct {
	ContainerFeatureCommon `json:",inline"`

	// ProcMount is the most permissive mount type allowed: Default denies Unmasked; Unmasked
	// allows both. Default Default.
	// +kubebuilder:default=Default
	// +optional
	ProcMount ProcMountType `json:"procMount,omitempty"`

	// ExemptUserNamespacePods allows any procMount in pods with hostUsers: false, whose /proc
	// belongs to the pod's own user namespace (Pod Security Standards baseline, v1.35 and
	// later). Default false.
	// +optional
	ExemptUserNamespacePods bool `json:"exemptUserNamespacePods,omitempty"`
}

// AppArmorProfile is an AppArmor profile in annotation form: runtime/default, unconfined or
// localhost/<name>; a trailing "*" is a prefix match (for example localhost/*).
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:XValidation:rule="self.matches('^([*]|runtime/default|unconfined|localhost/[^*]*[*]?)$')",message="must be runtime/default, unconfined, localhost/<profile> or a prefix of those ending in '*', such as localhost/*"
type AppArmorProfile string

// AppArmorFeature restricts AppArmor profiles. With setDefaults, pods without a pod-level
// appArmorProfile get RuntimeDefault when allowedProfiles allows runtime/default.
type AppArmorFeature struct {
	ContainerFeatureCommon `json:",inline"`
	FeatureDefaults        `json:",inline"`

	// AllowedProfiles lists the profiles containers may run under. A container without a
	// profile counts as runtime/default.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	// +required
	AllowedProfiles []AppArmorProfile `json:"allowedProfiles"`
}

// SeccompProfileType is a seccomp profile type, or "*" for any profile including none.
// +kubebuilder:validation:Enum="*";RuntimeDefault;Localhost;Unconfined
type SeccompProfileType string

// LocalhostProfileFile is a seccomp profile file below the kubelet's seccomp directory, or a
// prefix of such files ending in "*".
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:XValidation:rule="self.matches('^[^*]*[*]?$')",message="'*' is allowed only at the end"
type LocalhostProfileFile string

// SeccompFeature restricts seccomp profiles. With setDefaults, pods without a pod-level
// seccompProfile get RuntimeDefault when allowedProfiles lists RuntimeDefault or "*".
type SeccompFeature struct {
	ContainerFeatureCommon `json:",inline"`
	FeatureDefaults        `json:",inline"`

	// AllowedProfiles lists the profile types containers may run under; a container without a
	// profile is denied unless "*" is listed or allowUnset is true.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	// +required
	AllowedProfiles []SeccompProfileType `json:"allowedProfiles"`

	// AllowedLocalhostFiles lists the Localhost profile files allowed. Empty: no Localhost
	// profile is allowed.
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	// +optional
	AllowedLocalhostFiles []LocalhostProfileFile `json:"allowedLocalhostFiles,omitempty"`

	// AllowUnset admits containers that have no seccomp profile at all (neither their own nor
	// the pod's). With allowedProfiles [RuntimeDefault, Localhost] and allowedLocalhostFiles
	// ["*"] it reads "anything except Unconfined", the Pod Security Standards baseline.
	// Default false.
	// +optional
	AllowUnset bool `json:"allowUnset,omitempty"`
}

// SysctlPattern is a sysctl name (dots or slashes between segments), or a prefix ending in "*".
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:XValidation:rule="self.matches('^([*]|([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*([a-z0-9]([-_a-z0-9]*[a-z0-9])?|[a-z0-9][-_a-z0-9]*[*]|[*]))$')",message="must be a sysctl name such as net.ipv4.ip_local_port_range (lower-case segments separated by '.' or '/'), optionally ending in '*'"
type SysctlPattern string

// SysctlsFeature restricts sysctls.
// +kubebuilder:validation:XValidation:rule="!has(self.allowedSysctls) || !has(self.forbiddenSysctls) || !self.allowedSysctls.exists(a, self.forbiddenSysctls.exists(f, f == a || (f.endsWith('*') && a.startsWith(f.substring(0, f.size() - 1)))))",message="an allowed sysctl may not also be forbidden (exactly or by a forbidden prefix)"
type SysctlsFeature struct {
	FeatureCommon `json:",inline"`

	// ForbiddenSysctls are denied; a trailing "*" forbids a prefix. Forbidden wins over
	// allowed.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	ForbiddenSysctls []SysctlPattern `json:"forbiddenSysctls,omitempty"`

	// AllowedSysctls, when set, are the only sysctls allowed; a trailing "*" allows a prefix.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	AllowedSysctls []SysctlPattern `json:"allowedSysctls,omitempty"`
}
