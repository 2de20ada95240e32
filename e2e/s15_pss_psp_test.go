//go:build e2e

package e2e

import (
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

// convertPSP runs the real `psc convert-psp` on a tutorial policy and returns the spec.
func convertPSP(t *testing.T, file string) map[string]interface{} {
	t.Helper()
	out := runPSC(t, nil, "convert-psp", "-f", filepath.Join("..", "pspconvert", "testdata", file))
	obj := map[string]interface{}{}
	if err := sigsyaml.Unmarshal(out, &obj); err != nil {
		t.Fatalf("convert-psp output is not YAML: %v\n%s", err, out)
	}
	spec, ok := obj["spec"].(map[string]interface{})
	if !ok {
		t.Fatalf("convert-psp output has no spec:\n%s", out)
	}
	return spec
}

// podWith builds a pod that opts out of the service account token mount: the ServiceAccount
// admission plugin would otherwise add a projected volume, which the tutorial's nfs-only
// restrict-volumes policy (like the PSP it comes from) denies.
func podWith(ns, name, image string, mutate func(*corev1.PodSpec)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: ptrTo(false),
			Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	mutate(&p.Spec)
	return p
}

// TestConvertedPSPs: the classic PodSecurityPolicy tutorial policies, converted by the real
// binary, enforced by real Gatekeeper.
func TestConvertedPSPs(t *testing.T) {
	startScenario(t)
	ns := newNamespace(t, "psp")
	nonRoot := func(s *corev1.PodSpec) {
		s.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptrTo(true), RunAsUser: ptrTo(int64(999))}
	}
	hostPort := func(port int32) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 3306, HostPort: port}}
		}
	}
	pvc := func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "html", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "wordpress"}}}}
		s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "html", MountPath: "/var/www/html"}}
	}
	nfs := func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "html", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs.example.com", Path: "/wp"}}}}
	}

	t.Run("restrict-root", func(t *testing.T) {
		waitReady(t, setSpec(t, convertPSP(t, "restrict-root.yaml")), enforceTimeout)
		_, err := createPod(podWith(ns, "mariadb", "mariadb:11", func(*corev1.PodSpec) {}))
		expectDenied(t, "MariaDB pod without a user under restrict-root", err, `psc/usersAndGroups: container "app" sets neither runAsNonRoot: true nor a non-zero runAsUser`)
		_, err = createPod(podWith(ns, "mariadb-nonroot", "mariadb:11", nonRoot))
		expectAdmitted(t, "MariaDB pod with a non-root user under restrict-root", err)
	})
	t.Run("restrict-volumes", func(t *testing.T) {
		waitReady(t, setSpec(t, convertPSP(t, "restrict-volumes.yaml")), enforceTimeout)
		_, err := createPod(podWith(ns, "wordpress", "wordpress:6", pvc))
		expectDenied(t, "WordPress pod with a persistentVolumeClaim under restrict-volumes", err, `psc/volumeTypes:`, `persistentVolumeClaim`)
		_, err = createPod(podWith(ns, "wordpress-nfs", "wordpress:6", nfs))
		expectAdmitted(t, "WordPress pod with an nfs volume under restrict-volumes", err)
	})
	t.Run("restrict-ports", func(t *testing.T) {
		waitReady(t, setSpec(t, convertPSP(t, "restrict-ports.yaml")), enforceTimeout)
		_, err := createPod(podWith(ns, "mysql-3306", "mysql:8", hostPort(3306)))
		expectDenied(t, "hostPort 3306 under restrict-ports", err, `psc/hostNetworking: container "app" uses hostPort 3306`)
	})
	t.Run("permit-port-3306", func(t *testing.T) {
		waitReady(t, setSpec(t, convertPSP(t, "permit-port-3306.yaml")), enforceTimeout)
		_, err := createPod(podWith(ns, "mysql-3306-permitted", "mysql:8", hostPort(3306)))
		expectAdmitted(t, "hostPort 3306 under permit-port-3306", err)
		_, err = createPod(podWith(ns, "mysql-3307", "mysql:8", hostPort(3307)))
		expectDenied(t, "hostPort 3307 under permit-port-3306", err, `uses hostPort 3307`)
	})
}

// TestRestrictedProfile: spec.profile restricted through the API server, the operator and
// Gatekeeper; the status shows the profile and version in force.
func TestRestrictedProfile(t *testing.T) {
	startScenario(t)
	ns := newNamespace(t, "profile")
	gen := setSpec(t, map[string]interface{}{"profile": "restricted"})
	waitReady(t, gen, enforceTimeout)
	cr := mustGetCR(t)
	if cr.Status.Profile != string(v1alpha1.ProfileRestricted) || cr.Status.ProfileVersion != "v1.35" {
		t.Errorf("status shows profile %q version %q, want restricted v1.35", cr.Status.Profile, cr.Status.ProfileVersion)
	}
	if row := tableRow(kubectlGetPSC(t)); row["PROFILE"] != "restricted" || row["PSS"] != "v1.35" {
		t.Errorf("kubectl get psc: PROFILE %q PSS %q, want restricted v1.35", row["PROFILE"], row["PSS"])
	}
	_, err := createPod(simplePod(ns, "root", "nginx"))
	expectDenied(t, "a pod that runs as root with default settings under restricted", err,
		"psc/privilegeEscalation:", "psc/capabilities:", "psc/seccomp:", "psc/usersAndGroups:")
	_, err = createPod(compliantPod(ns, "compliant"))
	expectAdmitted(t, "a restricted-compliant pod", err)
}
