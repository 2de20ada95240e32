package templates_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// gatekeeper-library is a benchmark input only: nothing of it is in this repository. The
// benchmarks read its PSP templates at run time from a checkout named by
// PSC_GATEKEEPER_LIBRARY (the directory holding library/pod-security-policy), and skip with
// a message when it is not set. The README's figures were measured with the template
// versions (metadata.gatekeeper.sh/version) pinned in libraryPSP; a checkout with other
// versions is measured all the same, with a log line naming the differences.
const gatekeeperLibraryEnv = "PSC_GATEKEEPER_LIBRARY"

// libraryPSP lists the 15 gatekeeper-library PSP templates that match our features, with
// parameters configured like config/samples/..._full.yaml. fsgroup is left out: its
// K8sPSPFSGroup duplicates the fsGroup rule of users (K8sPSPAllowedUsers), which, like our
// usersAndGroups, covers runAsUser, runAsGroup, supplementalGroups and fsGroup. Our
// hostProcess and probeHosts have no counterpart among these 15, so our side runs 17
// constraints against the library's 15.
var libraryPSP = []struct {
	dir     string
	version string
	feature string
	params  map[string]interface{}
}{
	{"allow-privilege-escalation", "1.1.1", "privilegeEscalation", nil},
	{"apparmor", "1.1.1", "appArmor", map[string]interface{}{"allowedProfiles": []interface{}{"runtime/default", "localhost/*"}}},
	{"capabilities", "1.1.3", "capabilities", map[string]interface{}{
		"allowedCapabilities": []interface{}{"NET_BIND_SERVICE"}, "requiredDropCapabilities": []interface{}{"ALL"},
	}},
	{"flexvolume-drivers", "1.1.0", "flexVolumeDrivers", map[string]interface{}{
		"allowedFlexVolumes": []interface{}{map[string]interface{}{"driver": "example/lvm"}},
	}},
	{"forbidden-sysctls", "1.2.1", "sysctls", map[string]interface{}{
		"forbiddenSysctls": []interface{}{"kernel.*"}, "allowedSysctls": []interface{}{"net.ipv4.ip_local_port_range"},
	}},
	{"host-filesystem", "1.1.2", "hostFilesystem", map[string]interface{}{
		"allowedHostPaths": []interface{}{map[string]interface{}{"pathPrefix": "/var/log", "readOnly": true}},
	}},
	{"host-namespaces", "1.1.1", "hostNamespaces", nil},
	{"host-network-ports", "2.0.0", "hostNetworking", map[string]interface{}{"hostNetwork": false, "min": int64(8000), "max": int64(8080)}},
	{"privileged-containers", "1.2.0", "privilegedContainers", nil},
	{"proc-mount", "1.1.3", "procMount", map[string]interface{}{"procMount": "Default"}},
	{"read-only-root-filesystem", "1.1.2", "readOnlyRootFilesystem", nil},
	{"seccomp", "1.1.1", "seccomp", map[string]interface{}{
		"allowedProfiles": []interface{}{"RuntimeDefault", "Localhost"}, "allowedLocalhostFiles": []interface{}{"*"},
	}},
	{"selinux", "1.1.0", "seLinux", map[string]interface{}{
		"allowedSELinuxOptions": []interface{}{map[string]interface{}{"type": "container_t"}},
	}},
	{"users", "1.1.0", "usersAndGroups", map[string]interface{}{
		"runAsUser":          map[string]interface{}{"rule": "MustRunAsNonRoot"},
		"runAsGroup":         map[string]interface{}{"rule": "MustRunAs", "ranges": []interface{}{map[string]interface{}{"min": int64(1000), "max": int64(65535)}}},
		"supplementalGroups": map[string]interface{}{"rule": "MayRunAs", "ranges": []interface{}{map[string]interface{}{"min": int64(1000), "max": int64(65535)}}},
		"fsGroup":            map[string]interface{}{"rule": "RunAsAny"},
	}},
	{"volumes", "1.1.0", "volumeTypes", map[string]interface{}{
		"volumes": []interface{}{"configMap", "emptyDir", "projected", "secret", "downwardAPI", "persistentVolumeClaim", "ephemeral", "csi"},
	}},
}

// libraryObjects loads the 15 templates from the checkout and one constraint each, matching
// Pods with the namespaces our full sample excludes, enforcementAction deny. It returns the
// objects and, for the log, each template's version annotation and engines.
func libraryObjects(tb testing.TB, root string, excluded []interface{}) ([]*unstructured.Unstructured, []string) {
	tb.Helper()
	var objs []*unstructured.Unstructured
	var info []string
	for _, p := range libraryPSP {
		path := filepath.Join(root, "library", "pod-security-policy", p.dir, "template.yaml")
		if _, err := os.Stat(path); err != nil {
			tb.Fatalf("%s does not hold gatekeeper-library (want library/pod-security-policy/*/template.yaml): %v", gatekeeperLibraryEnv, err)
		}
		tmpl := &unstructured.Unstructured{Object: readObject(tb, path)}
		kind, _, _ := unstructured.NestedString(tmpl.Object, "spec", "crd", "spec", "names", "kind")
		if kind == "" {
			tb.Fatalf("%s: no spec.crd.spec.names.kind", path)
		}
		version := tmpl.GetAnnotations()["metadata.gatekeeper.sh/version"]
		if version != p.version {
			tb.Logf("gatekeeper-library %s is version %q; the README's figures used %s", p.dir, version, p.version)
		}
		info = append(info, fmt.Sprintf("%s %s (%s)", p.dir, version, strings.Join(templateEngines(tmpl), "+")))
		spec := map[string]interface{}{
			"enforcementAction": "deny",
			"match": map[string]interface{}{
				"kinds":              []interface{}{map[string]interface{}{"apiGroups": []interface{}{""}, "kinds": []interface{}{"Pod"}}},
				"excludedNamespaces": excluded,
			},
		}
		if p.params != nil {
			spec["parameters"] = p.params
		}
		objs = append(objs, tmpl, &unstructured.Unstructured{Object: map[string]interface{}{
			"apiVersion": templates.ConstraintGroupVersion.String(),
			"kind":       kind,
			"metadata":   map[string]interface{}{"name": "psp-" + p.dir},
			"spec":       spec,
		}})
	}
	return objs, info
}

// templateEngines lists the engines of a template's code: "Rego" for the legacy
// spec.targets[].rego field.
func templateEngines(tmpl *unstructured.Unstructured) []string {
	var engines []string
	targets, _, _ := unstructured.NestedSlice(tmpl.Object, "spec", "targets")
	for _, t := range targets {
		tm, _ := t.(map[string]interface{})
		if _, ok := tm["rego"]; ok {
			engines = append(engines, "Rego")
		}
		code, _, _ := unstructured.NestedSlice(tm, "code")
		for _, c := range code {
			if e, ok := c.(map[string]interface{})["engine"].(string); ok {
				engines = append(engines, e)
			}
		}
	}
	return engines
}

func hasCEL(tmpl *unstructured.Unstructured) bool {
	for _, e := range templateEngines(tmpl) {
		if e == templates.EngineCEL {
			return true
		}
	}
	return false
}

// libraryRoot is the gatekeeper-library checkout, or a skip.
func libraryRoot(tb testing.TB) string {
	tb.Helper()
	root := os.Getenv(gatekeeperLibraryEnv)
	if root == "" {
		tb.Skipf("%s is not set: the comparison with gatekeeper-library needs a checkout of it "+
			"(github.com/open-policy-agent/gatekeeper-library, the directory holding library/); "+
			"nothing of it is vendored here", gatekeeperLibraryEnv)
	}
	return root
}

// fullSampleRendered renders config/samples/..._full.yaml.
func fullSampleRendered(tb testing.TB) templates.Inventory {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("..", "config", "samples", "policy_v1alpha1_podsecurityconstraints_full.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	psc, err := loadSpec(tb, data)
	if err != nil {
		tb.Fatal(err)
	}
	rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		tb.Fatal(err)
	}
	return rendered
}

// excludedOf is the excludedNamespaces of the first rendered constraint.
func excludedOf(tb testing.TB, rendered templates.Inventory) []interface{} {
	tb.Helper()
	cons := rendered.Objects(templates.RoleConstraint)
	if len(cons) == 0 {
		tb.Fatal("no constraints rendered")
	}
	excluded, _, _ := unstructured.NestedSlice(cons[0].Object, "spec", "match", "excludedNamespaces")
	return excluded
}

// benchSide is one configuration measured side by side.
type benchSide struct {
	name string
	ev   *policytest.Evaluator
}

// librarySides loads, each in its own client, our full sample (17 features: one template, one
// constraint) and gatekeeper-library's 15 matching PSP templates configured alike, each on
// Gatekeeper's default engine configuration (CEL where a template has it, Rego otherwise) and
// with Rego forced. The first library side is the
// reference of the ratios. It logs what each side reports on both pods.
func librarySides(b *testing.B) []benchSide {
	b.Helper()
	root := libraryRoot(b)
	rendered := fullSampleRendered(b)
	lib, info := libraryObjects(b, root, excludedOf(b, rendered))
	b.Logf("gatekeeper-library at %s: %s", root, strings.Join(info, ", "))
	ours := rendered.Objects(templates.RoleTemplate, templates.RoleConstraint)
	ctx := context.Background()
	load := func(engine policytest.Engine, objs []*unstructured.Unstructured) *policytest.Evaluator {
		ev, err := policytest.NewWithEngine(ctx, engine, objs)
		if err != nil {
			b.Fatal(err)
		}
		return ev
	}
	sides := []benchSide{
		{"library/default", load(policytest.EngineCEL, lib)},
		{"library/rego", load(policytest.EngineRego, lib)},
		{"psc/default", load(policytest.EngineCEL, ours)},
		{"psc/rego", load(policytest.EngineRego, ours)},
	}
	for _, name := range []string{"compliant", "all-violating"} {
		pod := readObject(b, filepath.Join("testdata", "pods", name+".yaml"))
		for _, s := range sides {
			vs, err := s.ev.Review(ctx, policytest.Request{Object: pod, Namespace: "shop"})
			if err != nil {
				b.Fatal(err)
			}
			kinds := map[string]bool{}
			for _, v := range vs {
				kinds[v.Kind] = true
			}
			b.Logf("%s pod, %s: %d violations from %d constraints", name, s.name, len(vs), len(kinds))
			if name == "compliant" && len(vs) > 0 {
				b.Logf("  compliant pod denied by %s: %s", s.name, strings.Join(policytest.Messages(vs), " | "))
			}
		}
	}
	return sides
}

// BenchmarkLibrary measures each side of librarySides on the compliant and the
// all-violating pod: ns/op and allocations per review. Needs PSC_GATEKEEPER_LIBRARY.
func BenchmarkLibrary(b *testing.B) {
	sides := librarySides(b)
	for _, name := range []string{"compliant", "all-violating"} {
		pod := readObject(b, filepath.Join("testdata", "pods", name+".yaml"))
		for _, s := range sides {
			b.Run(s.name+"/"+name, func(b *testing.B) { benchReview(b, s.ev, []map[string]interface{}{pod}) })
		}
	}
}

// BenchmarkLibraryInterleaved is the latency comparison that stays fair on a shared, loaded
// machine: every iteration reviews the pod once with each side, in a rotating order, timing
// each review, so that all sides see the same load. It prints the p50 of each side and its
// ratio to the library on Gatekeeper's default, and reports the ratios as metrics.
func BenchmarkLibraryInterleaved(b *testing.B) {
	if os.Getenv("PSC_BENCH_INTERLEAVED") == "" {
		b.Skip("PSC_BENCH_INTERLEAVED is not set: hack/bench.sh runs this with a fixed number of iterations")
	}
	sides := librarySides(b)
	for _, name := range []string{"compliant", "all-violating"} {
		pod := readObject(b, filepath.Join("testdata", "pods", name+".yaml"))
		b.Run(name, func(b *testing.B) {
			p50, n := interleavedP50(b, sides, pod)
			fmt.Printf("interleaved p50, %s pod, %d reviews per side (load average %s):\n", name, n, loadAverage())
			for k, s := range sides {
				ratio := float64(p50[k]) / float64(p50[0])
				fmt.Printf("  %-30s %8.3f ms  %5.2fx library/default\n", s.name, float64(p50[k])/1e6, ratio)
				if k > 0 {
					b.ReportMetric(ratio, "x-"+strings.ReplaceAll(s.name, "/", "-"))
				}
			}
		})
	}
}

// interleavedP50 reviews the pod once with every side per iteration, in a rotating order so
// that all sides see the same load, timing each review; it returns each side's p50 and the
// number of reviews per side.
func interleavedP50(b *testing.B, sides []benchSide, pod map[string]interface{}) ([]time.Duration, int) {
	b.Helper()
	ctx := context.Background()
	durations := make([][]time.Duration, len(sides))
	i := 0
	for b.Loop() {
		for k := range sides {
			j := (k + i) % len(sides)
			start := time.Now()
			if _, err := sides[j].ev.Review(ctx, policytest.Request{Object: pod, Namespace: "shop"}); err != nil {
				b.Fatal(err)
			}
			durations[j] = append(durations[j], time.Since(start))
		}
		i++
	}
	p50 := make([]time.Duration, len(sides))
	for k, d := range durations {
		slices.Sort(d)
		p50[k] = d[len(d)/2]
	}
	return p50, i
}

// loadAverage is the 1-, 5- and 15-minute load average, for the record.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}

// TestWriteGatorBenchInputs writes the inputs of hack/bench.sh's gator runs into
// PSC_BENCH_GATOR_DIR (skipped when unset): psc/ (our full sample's templates and
// constraint), pods/<name>/objects.yaml and, with PSC_GATEKEEPER_LIBRARY, library/ (the 15
// templates and their constraints) and library-rego-only/ (the library templates without CEL
// code, which `gator bench -e cel` skips).
func TestWriteGatorBenchInputs(t *testing.T) {
	out := os.Getenv("PSC_BENCH_GATOR_DIR")
	if out == "" {
		t.Skip("PSC_BENCH_GATOR_DIR is not set (make bench sets it)")
	}
	rendered := fullSampleRendered(t)
	write := func(dir string, objs []*unstructured.Unstructured) {
		if err := os.MkdirAll(filepath.Join(out, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := templates.MarshalYAMLStream(objs)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, dir, "objects.yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("psc", rendered.Objects(templates.RoleTemplate, templates.RoleConstraint))
	for _, name := range []string{"compliant", "all-violating"} {
		pod := &unstructured.Unstructured{Object: readObject(t, filepath.Join("testdata", "pods", name+".yaml"))}
		write(filepath.Join("pods", name), []*unstructured.Unstructured{pod})
	}
	root := os.Getenv(gatekeeperLibraryEnv)
	if root == "" {
		return
	}
	lib, info := libraryObjects(t, root, excludedOf(t, rendered))
	t.Logf("gatekeeper-library: %s", strings.Join(info, ", "))
	write("library", lib)
	var regoOnly []*unstructured.Unstructured
	for i := 0; i < len(lib); i += 2 {
		if !hasCEL(lib[i]) {
			regoOnly = append(regoOnly, lib[i], lib[i+1])
		}
	}
	write("library-rego-only", regoOnly)
}
