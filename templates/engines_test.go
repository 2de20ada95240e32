package templates_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// TestEnginesAgree is a differential property test: random specs and random admission
// requests, each reviewed by Gatekeeper's default engine configuration (the templates' CEL)
// and with Rego forced; both must report the same findings (constraint, enforcement action,
// messages). PSC_ENGINE_CASES sets the number of requests (default 2000), PSC_ENGINE_SEED the
// seed (default: random, printed). A disagreement is minimized before it is reported.
//
// Every other spec's constraints are loaded as a hand-written constraint could have them: each
// list of strings in the parameters reversed and its first value repeated (handWritten). The
// operator passes its lists sorted, and the CEL takes a fast path for sorted lists; these specs
// make it take the general path (sorting and deduplicating in CEL), which Rego must agree with.
func TestEnginesAgree(t *testing.T) {
	n := envInt(t, "PSC_ENGINE_CASES", 2000)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PSC_ENGINE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PSC_ENGINE_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with PSC_ENGINE_SEED=%d), %d requests", seed, seed, n)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ctx := context.Background()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	const perSpec = 100
	done, denied, invalidSpecs, specs, invalidInARow := 0, 0, 0, 0, 0
	var loading, reviewing time.Duration
	for done < n {
		spec := randomSpec(rng)
		hand := specs%2 == 1
		start := time.Now()
		engines, err := loadEngines(ctx, v, spec, hand)
		loading += time.Since(start)
		if err != nil {
			invalidSpecs++
			// Most random specs are invalid (the API server's rules reject them); only a
			// generator that no longer produces valid ones fails the test.
			invalidInARow++
			if invalidInARow > 1000 {
				t.Fatalf("the spec generator keeps producing invalid specs, last: %v", err)
			}
			continue
		}
		specs++
		invalidInARow = 0
		for i := 0; i < perSpec && done < n; i++ {
			req := randomRequest(rng)
			start := time.Now()
			cel, rego, err := engines.compare(ctx, req)
			reviewing += time.Since(start)
			if err != nil {
				t.Fatalf("seed %d, request %d: %v", seed, done, err)
			}
			if !slices.Equal(cel, rego) {
				minSpec, minReq := minimize(ctx, v, spec, req, hand)
				specJSON, _ := json.Marshal(minSpec)
				reqJSON, _ := json.Marshal(minReq)
				e, _ := loadEngines(ctx, v, minSpec, hand)
				cel, rego, _ = e.compare(ctx, minReq)
				t.Fatalf("seed %d, request %d: the engines disagree (rerun with PSC_ENGINE_SEED=%d)\nminimized spec (hand-written lists: %t): %s\nminimized request: %s\nCEL:  %q\nRego: %q",
					seed, done, seed, hand, specJSON, reqJSON, cel, rego)
			}
			if len(rego) > 0 {
				denied++
			}
			done++
		}
	}
	t.Logf("%d requests, %d with findings, %d specs rejected by validation, engines agreed on all (loading %v, reviewing %v)",
		done, denied, invalidSpecs, loading.Round(time.Millisecond), reviewing.Round(time.Millisecond))
	if denied == 0 || denied == done {
		t.Errorf("the generator must produce both compliant and violating requests (%d of %d had findings)", denied, done)
	}
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

type enginePair struct{ cel, rego *policytest.Evaluator }

func loadEngines(ctx context.Context, v *validation.Validator, spec map[string]interface{}, hand bool) (*enginePair, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var specCopy map[string]interface{}
	if err := json.Unmarshal(data, &specCopy); err != nil {
		return nil, err
	}
	psc, errs := v.DefaultAndValidate(ctx, map[string]interface{}{
		"apiVersion": "policy.podsecurity.dev/v1alpha1",
		"kind":       "PodSecurityConstraints",
		"metadata":   map[string]interface{}{"name": "cluster"},
		"spec":       specCopy,
	})
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		return nil, err
	}
	objs := rendered.Objects(templates.RoleTemplate, templates.RoleConstraint)
	if hand {
		for _, o := range objs {
			spec := o.Object["spec"].(map[string]interface{})
			if params, ok := spec["parameters"]; ok {
				spec["parameters"] = handWritten(params)
			}
		}
	}
	var pair enginePair
	if pair.cel, err = policytest.NewWithEngine(ctx, policytest.EngineCEL, objs); err != nil {
		return nil, err
	}
	if pair.rego, err = policytest.NewWithEngine(ctx, policytest.EngineRego, objs); err != nil {
		return nil, err
	}
	return &pair, nil
}

// handWritten returns v (a constraint's parameters) with every list of strings in it written as
// a person might write it: reversed, with its first value repeated at the end. Neither changes
// what a list allows; both take the policies off their fast path for sorted lists.
func handWritten(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = handWritten(e)
		}
	case []interface{}:
		if len(x) == 0 {
			return x
		}
		if _, ok := x[0].(string); !ok {
			for i, e := range x {
				x[i] = handWritten(e)
			}
			return x
		}
		out := slices.Clone(x)
		slices.Reverse(out)
		return append(out, out[0])
	}
	return v
}

// compare reviews req on both engines and returns each one's findings as sorted
// "constraint action: message" lines. More than one CEL result for a feature of a constraint
// is an error (each feature's validation yields at most one), as is a CEL result whose
// messages are of more than one feature or that repeats a message (Rego's are a set).
func (p *enginePair) compare(ctx context.Context, req policytest.Request) (cel, rego []string, err error) {
	findings := func(ev *policytest.Evaluator, oneEach bool) ([]string, error) {
		vs, err := ev.Review(ctx, req)
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		var out []string
		for _, v := range vs {
			key := v.Constraint + " " + v.EnforcementAction
			feature := templates.FeatureOfMessage(v.Message)
			if oneEach && seen[key+" "+feature] {
				return nil, fmt.Errorf("%s: more than one CEL result for feature %q", key, feature)
			}
			seen[key+" "+feature] = true
			inResult := map[string]bool{}
			for _, m := range policytest.SplitMessages([]string{v.Message}) {
				if oneEach && templates.FeatureOfMessage(m) != feature {
					return nil, fmt.Errorf("%s: one CEL result holds messages of features %q and %q", key, feature, templates.FeatureOfMessage(m))
				}
				if oneEach && inResult[m] {
					return nil, fmt.Errorf("%s: a CEL result repeats the message %q", key, m)
				}
				inResult[m] = true
				out = append(out, key+": "+m)
			}
		}
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	if cel, err = findings(p.cel, true); err != nil {
		return nil, nil, fmt.Errorf("CEL: %w", err)
	}
	if rego, err = findings(p.rego, false); err != nil {
		return nil, nil, fmt.Errorf("Rego: %w", err)
	}
	return cel, rego, nil
}

// minimize shrinks a disagreeing case: it drops one part at a time (a feature of the spec, a
// map key or list element of the request's objects) as long as the engines still disagree.
func minimize(ctx context.Context, v *validation.Validator, spec map[string]interface{}, req policytest.Request, hand bool) (map[string]interface{}, policytest.Request) {
	disagree := func(spec map[string]interface{}, req policytest.Request) bool {
		e, err := loadEngines(ctx, v, spec, hand)
		if err != nil {
			return false
		}
		cel, rego, err := e.compare(ctx, req)
		return err != nil || !slices.Equal(cel, rego)
	}
	for changed := true; changed; {
		changed = false
		for k := range spec {
			smaller := deepCopyMap(spec)
			delete(smaller, k)
			if disagree(smaller, req) {
				spec, changed = smaller, true
			}
		}
		for _, which := range []string{"object", "oldObject"} {
			obj := req.Object
			if which == "oldObject" {
				obj = req.OldObject
			}
			if obj == nil {
				continue
			}
			for _, cand := range shrinkCandidates(obj) {
				r := req
				if which == "object" {
					r.Object = cand
				} else {
					r.OldObject = cand
				}
				if disagree(spec, r) {
					req, changed = r, true
					break
				}
			}
		}
	}
	return spec, req
}

// shrinkCandidates returns copies of obj each missing one map key or list element (at any
// depth), keeping metadata.name and the containers' names and images.
func shrinkCandidates(obj map[string]interface{}) []map[string]interface{} {
	var out []map[string]interface{}
	var walk func(path []interface{}, node interface{})
	walk = func(path []interface{}, node interface{}) {
		switch n := node.(type) {
		case map[string]interface{}:
			for k, child := range n {
				if k == "name" || k == "image" || k == "metadata" && len(path) == 0 || k == "spec" && len(path) == 0 {
					walk(append(slices.Clone(path), k), child)
					continue
				}
				c := deepCopyMap(obj)
				delete(lookup(c, path).(map[string]interface{}), k)
				out = append(out, c)
				walk(append(slices.Clone(path), k), child)
			}
		case []interface{}:
			for i, child := range n {
				c := deepCopyMap(obj)
				parentPath, last := path[:len(path)-1], path[len(path)-1].(string)
				parent := lookup(c, parentPath).(map[string]interface{})
				list := parent[last].([]interface{})
				parent[last] = append(slices.Clone(list[:i]), list[i+1:]...)
				out = append(out, c)
				walk(append(slices.Clone(path), i), child)
			}
		}
	}
	walk(nil, obj)
	return out
}

func lookup(node interface{}, path []interface{}) interface{} {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			node = node.(map[string]interface{})[k]
		case int:
			node = node.([]interface{})[k]
		}
	}
	return node
}

func deepCopyMap(m map[string]interface{}) map[string]interface{} {
	data, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	var out map[string]interface{}
	if err := json.Unmarshal(data, &out); err != nil {
		panic(err)
	}
	return out
}

// The generator draws from small pools so that values meet the parameters often, on both
// sides of each boundary.
var (
	genImages      = []string{"registry.example/app:1", "registry.example/tools/debug:2", "docker.io/library/busybox", "registry.example/app:2", "mirror.example/app:1"}
	genImagePats   = []string{"registry.example/tools/*", "docker.io/library/busybox", "mirror.example/*", "registry.example/app:1"}
	genNamespaces  = []string{"default", "shop", "kube-system", "team-a", "psc-system"}
	genPorts       = []int64{0, 80, 443, 8000, 8080, 8081, 9000, 65535}
	genIDs         = []int64{0, 1, 999, 1000, 1500, 65535, 70000}
	genCaps        = []string{"NET_BIND_SERVICE", "net_bind_service", "CAP_NET_ADMIN", "NET_ADMIN", "SYS_ADMIN", "cap_sys_admin", "ALL", "all", "CAP_ALL", "CHOWN", "KILL"}
	genVolumeTypes = []string{"configMap", "emptyDir", "secret", "hostPath", "flexVolume", "projected", "downwardAPI", "persistentVolumeClaim", "nfs", "csi", "ephemeral"}
	genHostPaths   = []string{"/var/log", "/var/log/app", "/var/logs", "/var/log/../etc", "/", "/etc", "/var//log/./x", "/data", "/data/db"}
	genPrefixes    = []string{"/var/log", "/var/log/", "/", "/data", "/etc/ssl", "/var"}
	genDrivers     = []string{"example/lvm", "example/cifs", "other/nfs", "Example/LVM"}
	genSysctls     = []string{"kernel.shm_rmid_forced", "kernel.msgmax", "net.ipv4.ip_local_port_range", "net/ipv4/ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.conf.eth0/100.rp_filter", "net/ipv4/conf/eth0.100/rp_filter", "vm.swappiness"}
	genSysctlPats  = []string{"kernel.*", "net.ipv4.ip_local_port_range", "net/ipv4/*", "net.ipv4.conf.eth0/100.rp_filter", "vm.*", "*", "net.*"}
	genSeccomp     = []string{"RuntimeDefault", "Localhost", "Unconfined"}
	genSeccompAnn  = []string{"runtime/default", "docker/default", "unconfined", "localhost/profiles/a.json", "localhost/other.json", "weird"}
	genFiles       = []string{"profiles/a.json", "profiles/*", "other.json", "*"}
	genAppArmorAnn = []string{"runtime/default", "unconfined", "localhost/k8s-nginx", "localhost/other"}
	genAppArmorPat = []string{"runtime/default", "unconfined", "localhost/*", "localhost/k8s-nginx", "*"}
	genSELinux     = []map[string]interface{}{{"type": "container_t"}, {"type": "spc_t"}, {"level": "s0:c1,c2", "type": "container_t"}, {"user": "system_u", "role": "system_r", "type": "spc_t"}, {"type": ""}, {}}
)

func pick[T any](rng *rand.Rand, items []T) T { return items[rng.IntN(len(items))] }

func chance(rng *rand.Rand, p float64) bool { return rng.Float64() < p }

func some[T any](rng *rand.Rand, items []T, max int) []interface{} {
	n := rng.IntN(max + 1)
	out := make([]interface{}, 0, n)
	for range n {
		out = append(out, pick(rng, items))
	}
	return out
}

func randomRanges(rng *rand.Rand, pool []int64, max int) []interface{} {
	n := rng.IntN(max + 1)
	out := make([]interface{}, 0, n)
	for range n {
		a, b := pick(rng, pool), pick(rng, pool)
		if a > b {
			a, b = b, a
		}
		out = append(out, map[string]interface{}{"min": a, "max": b})
	}
	return out
}

func randomSpec(rng *rand.Rand) map[string]interface{} {
	spec := map[string]interface{}{}
	if chance(rng, 0.3) {
		spec["excludedNamespaces"] = some(rng, []string{"team-a", "kube-system", "shop"}, 2)
	}
	if chance(rng, 0.4) {
		spec["exemptImages"] = some(rng, genImagePats, 2)
	}
	feature := func(name string, params map[string]interface{}) {
		if !chance(rng, 0.85) {
			return
		}
		params["enabled"] = true
		if chance(rng, 0.1) {
			params["enforcementAction"] = pick(rng, []string{"warn", "dryrun"})
		}
		if f, _ := templates.FeatureByName(name); f.ContainerLevel && chance(rng, 0.2) {
			params["exemptImages"] = some(rng, genImagePats, 1)
		}
		spec[name] = params
	}
	feature("privilegedContainers", map[string]interface{}{})
	feature("hostProcess", map[string]interface{}{})
	feature("probeHosts", map[string]interface{}{"allowedHosts": some(rng, []string{"localhost", "10.0.0.1"}, 1)})
	feature("hostNamespaces", map[string]interface{}{})
	hostNet := map[string]interface{}{"allowHostNetwork": chance(rng, 0.5)}
	if chance(rng, 0.8) {
		hostNet["hostPorts"] = randomRanges(rng, genPorts[1:], 3)
	}
	feature("hostNetworking", hostNet)
	feature("volumeTypes", map[string]interface{}{"allowed": uniq(some(rng, append(slices.Clone(genVolumeTypes), "*"), 6))})
	paths := []interface{}{}
	for range rng.IntN(3) {
		e := map[string]interface{}{"pathPrefix": pick(rng, genPrefixes)}
		if chance(rng, 0.6) {
			e["readOnly"] = chance(rng, 0.7)
		}
		paths = append(paths, e)
	}
	feature("hostFilesystem", map[string]interface{}{"allowedHostPaths": paths})
	feature("flexVolumeDrivers", map[string]interface{}{"allowedDrivers": uniq(some(rng, genDrivers, 2))})
	feature("readOnlyRootFilesystem", map[string]interface{}{})
	ug := map[string]interface{}{}
	ug["runAsUser"] = idRule(rng, []string{"MustRunAs", "MustRunAsNonRoot", "RunAsAny"})
	for _, f := range []string{"runAsGroup", "supplementalGroups", "fsGroup"} {
		if chance(rng, 0.8) {
			ug[f] = idRule(rng, []string{"MustRunAs", "MayRunAs", "RunAsAny"})
		}
	}
	if chance(rng, 0.4) {
		ug["runAsNonRoot"] = "Required"
	}
	if chance(rng, 0.4) {
		ug["exemptUserNamespacePods"] = true
	}
	feature("usersAndGroups", ug)
	feature("privilegeEscalation", map[string]interface{}{})
	feature("capabilities", map[string]interface{}{
		"allowedCapabilities":      uniq(some(rng, append(slices.Clone(genCaps), "*"), 3)),
		"requiredDropCapabilities": uniq(some(rng, genCaps, 2)),
	})
	opts := []interface{}{}
	for range rng.IntN(3) {
		opts = append(opts, pick(rng, genSELinux))
	}
	if chance(rng, 0.3) {
		opts = append(opts, map[string]interface{}{"type": pick(rng, []string{"container_t", "spc_t"}), "level": "*"})
	}
	feature("seLinux", map[string]interface{}{"allowedSELinuxOptions": opts})
	feature("procMount", map[string]interface{}{"procMount": pick(rng, []string{"Default", "Unmasked"}), "exemptUserNamespacePods": chance(rng, 0.5)})
	feature("appArmor", map[string]interface{}{"allowedProfiles": uniq(some(rng, genAppArmorPat, 2))})
	feature("seccomp", map[string]interface{}{
		"allowedProfiles":       uniq(some(rng, append(slices.Clone(genSeccomp), "*"), 3)),
		"allowedLocalhostFiles": some(rng, genFiles, 2),
		"allowUnset":            chance(rng, 0.3),
	})
	feature("sysctls", map[string]interface{}{
		"forbiddenSysctls": some(rng, genSysctlPats, 2),
		"allowedSysctls":   some(rng, genSysctlPats, 2),
	})
	return spec
}

func idRule(rng *rand.Rand, rules []string) map[string]interface{} {
	r := map[string]interface{}{"rule": pick(rng, rules)}
	if r["rule"] == "MustRunAs" || r["rule"] == "MayRunAs" {
		r["ranges"] = randomRanges(rng, genIDs, 2)
		if len(r["ranges"].([]interface{})) == 0 {
			r["ranges"] = randomRanges(rng, genIDs, 1)
		}
	}
	return r
}

func uniq(items []interface{}) []interface{} {
	out := []interface{}{}
	for _, i := range items {
		if !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	return out
}

// randomPod returns a pod with n containers, init containers and ephemeral containers each
// drawn from the pools, and the names of its containers.
func randomPod(rng *rand.Rand) map[string]interface{} {
	spec := map[string]interface{}{}
	annotations := map[string]interface{}{}
	var volumeNames []string
	var volumes []interface{}
	for i := range rng.IntN(4) {
		name := fmt.Sprintf("vol-%d", i)
		volumeNames = append(volumeNames, name)
		v := map[string]interface{}{"name": name}
		switch t := pick(rng, append(slices.Clone(genVolumeTypes), "")); t {
		case "":
		case "hostPath":
			v[t] = map[string]interface{}{"path": pick(rng, genHostPaths)}
		case "flexVolume":
			v[t] = map[string]interface{}{"driver": pick(rng, genDrivers)}
		default:
			v[t] = map[string]interface{}{}
		}
		volumes = append(volumes, v)
	}
	if len(volumes) > 0 {
		spec["volumes"] = volumes
	}
	container := func(name string) map[string]interface{} {
		c := map[string]interface{}{"name": name, "image": pick(rng, genImages)}
		if chance(rng, 0.8) {
			c["securityContext"] = randomSecurityContext(rng, true)
		}
		if chance(rng, 0.4) {
			ports := []interface{}{}
			for range 1 + rng.IntN(2) {
				p := map[string]interface{}{"containerPort": pick(rng, genPorts[1:])}
				if chance(rng, 0.5) {
					p["hostPort"] = pick(rng, genPorts)
				}
				ports = append(ports, p)
			}
			c["ports"] = ports
		}
		if len(volumeNames) > 0 && chance(rng, 0.5) {
			mounts := []interface{}{}
			for range 1 + rng.IntN(2) {
				m := map[string]interface{}{"name": pick(rng, volumeNames), "mountPath": "/mnt/" + strconv.Itoa(rng.IntN(9))}
				if chance(rng, 0.5) {
					m["readOnly"] = chance(rng, 0.6)
				}
				mounts = append(mounts, m)
			}
			c["volumeMounts"] = mounts
		}
		if chance(rng, 0.15) {
			annotations["container.seccomp.security.alpha.kubernetes.io/"+name] = pick(rng, genSeccompAnn)
		}
		if chance(rng, 0.15) {
			annotations["container.apparmor.security.beta.kubernetes.io/"+name] = pick(rng, genAppArmorAnn)
		}
		return c
	}
	for _, list := range []struct {
		field, prefix string
		min, max      int
	}{{"containers", "app", 1, 3}, {"initContainers", "init", 0, 2}, {"ephemeralContainers", "debug", 0, 2}} {
		n := list.min + rng.IntN(list.max-list.min+1)
		var cs []interface{}
		for i := range n {
			cs = append(cs, container(fmt.Sprintf("%s-%d", list.prefix, i)))
		}
		if len(cs) > 0 {
			spec[list.field] = cs
		}
	}
	for _, f := range []string{"hostPID", "hostIPC", "hostNetwork"} {
		if chance(rng, 0.15) {
			spec[f] = chance(rng, 0.7)
		}
	}
	if chance(rng, 0.15) {
		spec["os"] = map[string]interface{}{"name": pick(rng, []string{"windows", "linux"})}
	}
	if chance(rng, 0.7) {
		spec["securityContext"] = randomSecurityContext(rng, false)
	}
	if chance(rng, 0.15) {
		annotations["seccomp.security.alpha.kubernetes.io/pod"] = pick(rng, genSeccompAnn)
	}
	meta := map[string]interface{}{"name": "pod-" + strconv.Itoa(rng.IntN(1000))}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	return map[string]interface{}{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
}

// randomSecurityContext draws a container's (container true) or the pod's securityContext.
func randomSecurityContext(rng *rand.Rand, container bool) map[string]interface{} {
	sc := map[string]interface{}{}
	set := func(p float64, key string, value func() interface{}) {
		if chance(rng, p) {
			sc[key] = value()
		}
	}
	boolean := func() interface{} { return chance(rng, 0.5) }
	id := func() interface{} { return pick(rng, genIDs) }
	set(0.3, "runAsUser", id)
	set(0.3, "runAsGroup", id)
	set(0.3, "runAsNonRoot", boolean)
	set(0.2, "seLinuxOptions", func() interface{} { return deepCopyMap(pick(rng, genSELinux)) })
	set(0.3, "seccompProfile", func() interface{} {
		p := map[string]interface{}{"type": pick(rng, genSeccomp)}
		if p["type"] == "Localhost" {
			p["localhostProfile"] = pick(rng, []string{"profiles/a.json", "other.json", "profiles/b.json"})
		}
		return p
	})
	set(0.2, "appArmorProfile", func() interface{} {
		p := map[string]interface{}{"type": pick(rng, []string{"RuntimeDefault", "Unconfined", "Localhost"})}
		if p["type"] == "Localhost" {
			p["localhostProfile"] = pick(rng, []string{"k8s-nginx", "other"})
		}
		return p
	})
	if container {
		set(0.2, "privileged", boolean)
		set(0.4, "allowPrivilegeEscalation", boolean)
		set(0.4, "readOnlyRootFilesystem", boolean)
		set(0.2, "procMount", func() interface{} { return pick(rng, []string{"Default", "Unmasked"}) })
		set(0.5, "capabilities", func() interface{} {
			caps := map[string]interface{}{}
			if chance(rng, 0.5) {
				caps["add"] = some(rng, genCaps, 2)
			}
			if chance(rng, 0.7) {
				caps["drop"] = some(rng, genCaps, 2)
			}
			return caps
		})
	} else {
		set(0.3, "fsGroup", id)
		set(0.3, "supplementalGroups", func() interface{} { return some(rng, genIDs, 2) })
		set(0.2, "sysctls", func() interface{} {
			out := []interface{}{}
			for _, name := range some(rng, genSysctls, 2) {
				out = append(out, map[string]interface{}{"name": name, "value": "1"})
			}
			return out
		})
	}
	return sc
}

// randomRequest: a creation, an update of a stored pod, an ephemeralcontainers update, or a
// workload's pod judged through expansion (generated, no oldObject).
func randomRequest(rng *rand.Rand) policytest.Request {
	pod := randomPod(rng)
	req := policytest.Request{Object: pod, Namespace: pick(rng, genNamespaces)}
	switch rng.IntN(6) {
	case 0, 1:
		req.Operation = "CREATE"
	case 2:
		req.Operation = "UPDATE"
		req.OldObject = deepCopyMap(pod)
		if chance(rng, 0.5) {
			req.OldObject = randomPod(rng)
		}
	case 3, 4:
		// kubectl debug: the stored pod has the first k ephemeral containers.
		req.Operation, req.SubResource = "UPDATE", "ephemeralcontainers"
		old := deepCopyMap(pod)
		spec := old["spec"].(map[string]interface{})
		if eph, ok := spec["ephemeralContainers"].([]interface{}); ok {
			if k := rng.IntN(len(eph) + 1); k > 0 {
				spec["ephemeralContainers"] = eph[:k]
			} else {
				delete(spec, "ephemeralContainers")
			}
		}
		req.OldObject = old
	case 5:
		req.Generated = true
		req.Operation = pick(rng, []string{"CREATE", "UPDATE"})
	}
	return req
}
