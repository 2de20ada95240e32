package templates_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/profiles"
)

// TestPSADifferential holds the presets to Pod Security Admission on random pods: every field
// the Pod Security Standards read, in every container kind, pod and container level, Windows
// pods and user namespaces. Each pod gets PSA's verdict (k8s.io/pod-security-admission/policy)
// and ours on every engine; any disagreement fails the test with the seed, the pod and both
// reasons. PSC_ORACLE_SEED replays a run; PSC_ORACLE_PODS changes the number of pods.
//
// The generator makes pods the API server accepts: Windows pods carry no Linux-only fields,
// Linux pods no windowsOptions, ephemeral containers no ports, probes or lifecycle, and an
// AppArmor annotation only where no appArmorProfile field applies to its container (the API
// server requires the two to agree). Legacy seccomp annotations are not generated: PSS v1.19
// and later read only the field, and the API server copies the annotation into the field.
func TestPSADifferential(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PSC_ORACLE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PSC_ORACLE_SEED: %v", err)
		}
		seed = v
	}
	pods := 2000
	if s := os.Getenv("PSC_ORACLE_PODS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("PSC_ORACLE_PODS must be a positive number, got %q", s)
		}
		pods = v
	}
	t.Logf("seed %d (replay with PSC_ORACLE_SEED=%d)", seed, seed)

	// The latest version with the full count, and an older pinned version (before probe hosts,
	// user namespace relaxations and container_engine_t; v1.29 sysctls) with a quarter of it.
	runs := []struct {
		minor, pods int
	}{{profiles.LatestMinor, pods}, {29, max(pods/4, 1)}}

	for _, engine := range oracleEngines {
		t.Run(engine.name, func(t *testing.T) {
			for _, level := range []psaapi.Level{psaapi.LevelBaseline, psaapi.LevelRestricted} {
				for _, run := range runs {
					t.Run(fmt.Sprintf("%s/v1.%d", level, run.minor), func(t *testing.T) {
						t.Parallel()
						r := presetReviewer(t, engine.load, level, run.minor)
						rng := rand.New(rand.NewPCG(seed, uint64(run.minor)))
						allowed, disagreements := 0, 0
						for i := 0; i < run.pods; i++ {
							pod := randomPSSPod(rng, i)
							psaAllowed, reason := psaVerdict(t, level, run.minor, pod)
							denied := ourVerdict(t, r, podToMap(t, pod))
							if psaAllowed {
								allowed++
							}
							if psaAllowed == (len(denied) == 0) {
								continue
							}
							disagreements++
							if disagreements <= 3 {
								out, _ := yaml.Marshal(pod)
								t.Errorf("seed %d, pod %d: PSA allowed=%v (%s); we deny: %q\n%s", seed, i, psaAllowed, reason, denied, out)
							}
						}
						if disagreements > 0 {
							t.Errorf("seed %d: %d of %d pods disagree with Pod Security Admission %s v1.%d (replay with PSC_ORACLE_SEED=%d)",
								seed, disagreements, run.pods, level, run.minor, seed)
						}
						// A generator that makes only admitted or only denied pods proves little.
						if run.pods >= 200 && (allowed < run.pods/20 || allowed > run.pods*19/20) {
							t.Errorf("the generator is lopsided: PSA admitted %d of %d pods", allowed, run.pods)
						}
						t.Logf("%s v1.%d: %d pods, PSA admitted %d and denied %d, %d disagreements", level, run.minor, run.pods, allowed, run.pods-allowed, disagreements)
					})
				}
			}
		})
	}
}

// pssGen draws the random choices of one pod.
type pssGen struct{ r *rand.Rand }

// pick returns one of the options, uniformly.
func pssPick[T any](g pssGen, options ...T) T { return options[g.r.IntN(len(options))] }

// often is true with probability p.
func (g pssGen) often(p float64) bool { return g.r.Float64() < p }

func pssPtr[T any](v T) *T { return &v }

func (g pssGen) boolPtr() *bool { return pssPick(g, nil, nil, pssPtr(true), pssPtr(false)) }

func (g pssGen) seccomp() *corev1.SeccompProfile {
	return pssPick(g, nil, nil,
		&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: pssPtr("profiles/app.json")},
		&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined})
}

func (g pssGen) appArmor() *corev1.AppArmorProfile {
	return pssPick(g, nil, nil, nil,
		&corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault},
		&corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: pssPtr("k8s-nginx")},
		&corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined})
}

func (g pssGen) seLinux() *corev1.SELinuxOptions {
	if g.often(0.6) {
		return nil
	}
	return &corev1.SELinuxOptions{
		Type:  pssPick(g, "", "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t", "spc_t"),
		User:  pssPick(g, "", "", "", "system_u"),
		Role:  pssPick(g, "", "", "", "system_r"),
		Level: pssPick(g, "", "s0:c123,c456"),
	}
}

func (g pssGen) runAsUser() *int64 {
	return pssPick(g, nil, nil, pssPtr(int64(0)), pssPtr(int64(1000)))
}

func (g pssGen) capabilities() *corev1.Capabilities {
	if g.often(0.25) {
		return nil
	}
	caps := &corev1.Capabilities{}
	for _, c := range []corev1.Capability{"NET_BIND_SERVICE", "CHOWN", "chown", "CAP_CHOWN", "SYS_ADMIN", "NET_RAW", "KILL", "SYS_TIME"} {
		if g.often(0.12) {
			caps.Add = append(caps.Add, c)
		}
	}
	if g.often(0.7) {
		caps.Drop = append(caps.Drop, pssPick[corev1.Capability](g, "ALL", "ALL", "ALL", "all", "CAP_ALL", "NET_RAW"))
	}
	return caps
}

func (g pssGen) handler() (host string, http bool) {
	return pssPick(g, "", "", "", "", "10.0.0.1", "localhost"), g.often(0.5)
}

func (g pssGen) probe() *corev1.Probe {
	if g.often(0.7) {
		return nil
	}
	host, http := g.handler()
	if http {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080), Host: host}}}
	}
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080), Host: host}}}
}

func (g pssGen) lifecycleHandler() *corev1.LifecycleHandler {
	if g.often(0.8) {
		return nil
	}
	host, http := g.handler()
	if http {
		return &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080), Host: host}}
	}
	return &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080), Host: host}}
}

// container draws a container; ephemeral containers get what the API allows them.
func (g pssGen) container(name string, ephemeral bool) corev1.Container {
	c := corev1.Container{Name: name, Image: "registry.example.com/app:1"}
	if !ephemeral {
		if g.often(0.25) {
			c.Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: pssPick[int32](g, 0, 0, 8080)}}
		}
		c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = g.probe(), g.probe(), g.probe()
		if post, pre := g.lifecycleHandler(), g.lifecycleHandler(); post != nil || pre != nil {
			c.Lifecycle = &corev1.Lifecycle{PostStart: post, PreStop: pre}
		}
	}
	if g.often(0.15) {
		return c
	}
	sc := &corev1.SecurityContext{
		Privileged:               pssPick(g, nil, nil, nil, pssPtr(false), pssPtr(true)),
		AllowPrivilegeEscalation: pssPick(g, nil, pssPtr(false), pssPtr(false), pssPtr(true)),
		RunAsNonRoot:             g.boolPtr(),
		RunAsUser:                g.runAsUser(),
		Capabilities:             g.capabilities(),
		SeccompProfile:           g.seccomp(),
		SELinuxOptions:           g.seLinux(),
		AppArmorProfile:          g.appArmor(),
	}
	if g.often(0.15) {
		sc.ProcMount = pssPick(g, pssPtr(corev1.DefaultProcMount), pssPtr(corev1.UnmaskedProcMount))
	}
	if g.often(0.1) {
		sc.WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: g.boolPtr()}
	}
	c.SecurityContext = sc
	return c
}

var pssSysctlNames = []string{
	"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
	"net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "kernel.msgmax", "net.core.somaxconn",
	"net/ipv4/tcp_syncookies",
}

var pssVolumeSources = []func() corev1.VolumeSource{
	func() corev1.VolumeSource { return corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}} },
	func() corev1.VolumeSource {
		return corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}
	},
	func() corev1.VolumeSource { return corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}} },
	func() corev1.VolumeSource {
		return corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}
	},
	func() corev1.VolumeSource { return corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}} },
	func() corev1.VolumeSource { return corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}} },
	func() corev1.VolumeSource {
		return corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "csi.example.com"}}
	},
	func() corev1.VolumeSource { return corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}} },
	func() corev1.VolumeSource {
		return corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "img"}}
	},
	func() corev1.VolumeSource {
		return corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}
	},
	func() corev1.VolumeSource {
		return corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs", Path: "/"}}
	},
	func() corev1.VolumeSource {
		return corev1.VolumeSource{FlexVolume: &corev1.FlexVolumeSource{Driver: "example/lvm"}}
	},
	func() corev1.VolumeSource {
		return corev1.VolumeSource{GitRepo: &corev1.GitRepoVolumeSource{Repository: "r"}}
	},
}

// randomPod draws a pod; most draws stay close to compliant so that single violations are
// common, and each field is left out often enough for precedence to matter.
func randomPSSPod(r *rand.Rand, i int) *corev1.Pod {
	g := pssGen{r}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: "default"},
	}
	spec := &pod.Spec
	spec.OS = pssPick(g, nil, nil, nil, &corev1.PodOS{Name: corev1.Linux}, &corev1.PodOS{Name: corev1.Windows})
	spec.HostNetwork = g.often(0.05)
	spec.HostPID = g.often(0.05)
	spec.HostIPC = g.often(0.05)
	spec.HostUsers = pssPick(g, nil, nil, pssPtr(true), pssPtr(false))
	if !g.often(0.2) {
		sc := &corev1.PodSecurityContext{
			RunAsNonRoot:    pssPick(g, nil, pssPtr(true), pssPtr(true), pssPtr(false)),
			RunAsUser:       g.runAsUser(),
			SeccompProfile:  pssPick(g, g.seccomp(), &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}),
			SELinuxOptions:  g.seLinux(),
			AppArmorProfile: g.appArmor(),
		}
		if g.often(0.2) {
			for _, name := range pssSysctlNames {
				if g.often(0.12) {
					sc.Sysctls = append(sc.Sysctls, corev1.Sysctl{Name: name, Value: "1"})
				}
			}
		}
		if g.often(0.1) {
			sc.WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: g.boolPtr()}
		}
		spec.SecurityContext = sc
	}
	for n := 1 + g.r.IntN(2); n > 0; n-- {
		spec.Containers = append(spec.Containers, g.container(fmt.Sprintf("app%d", n), false))
	}
	if g.often(0.3) {
		spec.InitContainers = append(spec.InitContainers, g.container("init", false))
	}
	if g.often(0.25) {
		spec.EphemeralContainers = append(spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(g.container("debug", true))})
	}
	if g.often(0.5) {
		for n := 1 + g.r.IntN(2); n > 0; n-- {
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: fmt.Sprintf("v%d", n), VolumeSource: pssPick(g, pssVolumeSources...)()})
		}
	}
	g.appArmorAnnotations(pod)
	if g.often(0.6) {
		g.mostlyCompliant(pod)
	}
	makeAcceptable(pod)
	return pod
}

// pssControls are the parts of a pod mostlyCompliant fixes, by name.
var pssControls = []string{"hostNamespaces", "runAsNonRoot", "runAsUser", "seccomp", "seLinux", "appArmor", "sysctls",
	"hostProcess", "volumes", "hostPorts", "probeHosts", "privileged", "privilegeEscalation", "capabilities", "procMount"}

// mostlyCompliant brings every control of the pod but one or two, drawn at random, to
// restricted's terms, so that compliant pods and pods with a single violation, the ones that
// tell a too strict or too lax policy apart, are common.
func (g pssGen) mostlyCompliant(pod *corev1.Pod) {
	spec := &pod.Spec
	skip := map[string]bool{}
	if g.often(0.85) {
		skip[pssPick(g, pssControls...)] = true
	}
	if g.often(0.3) {
		skip[pssPick(g, pssControls...)] = true
	}
	fixes := func(control string) func() bool { return func() bool { return !skip[control] } }
	if fixes("hostNamespaces")() {
		spec.HostNetwork, spec.HostPID, spec.HostIPC = false, false, false
	}
	if spec.SecurityContext == nil {
		spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	psc := spec.SecurityContext
	if fixes("runAsNonRoot")() {
		psc.RunAsNonRoot = pssPtr(true)
	}
	if fixes("runAsUser")() && psc.RunAsUser != nil {
		psc.RunAsUser = pssPtr(int64(1000))
	}
	if fixes("seccomp")() {
		psc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	}
	if fixes("seLinux")() {
		psc.SELinuxOptions = nil
	}
	if fixes("appArmor")() {
		psc.AppArmorProfile = nil
		pod.Annotations = nil
	}
	if fixes("sysctls")() {
		psc.Sysctls = nil
	}
	if fixes("hostProcess")() {
		psc.WindowsOptions = nil
	}
	if fixes("volumes")() {
		var kept []corev1.Volume
		for _, v := range spec.Volumes {
			if v.HostPath == nil && v.NFS == nil && v.FlexVolume == nil && v.GitRepo == nil {
				kept = append(kept, v)
			}
		}
		spec.Volumes = kept
	}
	pssVisit(pod, func(c *corev1.Container) {
		if fixes("hostPorts")() {
			for i := range c.Ports {
				c.Ports[i].HostPort = 0
			}
		}
		if fixes("probeHosts")() {
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
				pssClearProbeHost(p)
			}
			if c.Lifecycle != nil {
				c.Lifecycle = nil
			}
		}
		if c.SecurityContext == nil {
			c.SecurityContext = &corev1.SecurityContext{}
		}
		sc := c.SecurityContext
		if fixes("privileged")() {
			sc.Privileged = nil
		}
		if fixes("privilegeEscalation")() {
			sc.AllowPrivilegeEscalation = pssPtr(false)
		}
		if fixes("capabilities")() {
			sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
			if g.often(0.2) {
				sc.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
			}
		}
		if fixes("runAsNonRoot")() && sc.RunAsNonRoot != nil {
			sc.RunAsNonRoot = pssPtr(true)
		}
		if fixes("runAsUser")() && sc.RunAsUser != nil {
			sc.RunAsUser = pssPtr(int64(1000))
		}
		if fixes("seccomp")() && sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
			sc.SeccompProfile = nil
		}
		if fixes("seLinux")() {
			sc.SELinuxOptions = nil
		}
		if fixes("appArmor")() {
			sc.AppArmorProfile = nil
		}
		if fixes("procMount")() {
			sc.ProcMount = nil
		}
		if fixes("hostProcess")() {
			sc.WindowsOptions = nil
		}
	})
}

func pssClearProbeHost(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.HTTPGet != nil {
		p.HTTPGet.Host = ""
	}
	if p.TCPSocket != nil {
		p.TCPSocket.Host = ""
	}
}

// appArmorAnnotations adds legacy AppArmor annotations to some containers whose profile no
// field sets (the API server requires annotation and field to agree).
func (g pssGen) appArmorAnnotations(pod *corev1.Pod) {
	if pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.AppArmorProfile != nil {
		return
	}
	pssVisit(pod, func(c *corev1.Container) {
		if (c.SecurityContext == nil || c.SecurityContext.AppArmorProfile == nil) && g.often(0.15) {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix+c.Name] =
				pssPick(g, "runtime/default", "localhost/k8s-nginx", "unconfined", "")
		}
	})
}

// makeAcceptable removes what the API server rejects for the pod's OS.
func makeAcceptable(pod *corev1.Pod) {
	spec := &pod.Spec
	switch {
	case spec.OS != nil && spec.OS.Name == corev1.Windows:
		spec.HostPID, spec.HostIPC, spec.HostUsers = false, false, nil
		pod.Annotations = nil
		if sc := spec.SecurityContext; sc != nil {
			sc.RunAsUser, sc.SeccompProfile, sc.SELinuxOptions, sc.AppArmorProfile, sc.Sysctls = nil, nil, nil, nil, nil
		}
		pssVisit(pod, func(c *corev1.Container) {
			if sc := c.SecurityContext; sc != nil {
				sc.Privileged, sc.AllowPrivilegeEscalation, sc.RunAsUser, sc.Capabilities = nil, nil, nil, nil
				sc.SeccompProfile, sc.SELinuxOptions, sc.AppArmorProfile, sc.ProcMount = nil, nil, nil, nil
			}
		})
	case spec.OS != nil && spec.OS.Name == corev1.Linux:
		if sc := spec.SecurityContext; sc != nil {
			sc.WindowsOptions = nil
		}
		pssVisit(pod, func(c *corev1.Container) {
			if c.SecurityContext != nil {
				c.SecurityContext.WindowsOptions = nil
			}
		})
	}
}

func pssVisit(pod *corev1.Pod, f func(*corev1.Container)) {
	for i := range pod.Spec.InitContainers {
		f(&pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		f(&pod.Spec.Containers[i])
	}
	for i := range pod.Spec.EphemeralContainers {
		f((*corev1.Container)(&pod.Spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
}
