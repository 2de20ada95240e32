package templates_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// TestLongMessagesAreCut: the API server drops a messageExpression's result longer than 5 KiB
// and falls back to the static message. A feature with more violations than fit is cut at a
// message boundary on the CEL side, keeps what it lists in the order Rego gives them, and says
// how many there are in all; the count of whole messages shows nothing was cut mid-message.
// Non-ASCII text (a hostPath can hold any character) is cut by characters, at most 4 bytes each.
func TestLongMessagesAreCut(t *testing.T) {
	ctx := context.Background()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	many := func(n int, f func(i int) map[string]interface{}) []interface{} {
		out := make([]interface{}, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	// addingCapabilities is a pod spec of n containers (named after format) adding SYS_ADMIN.
	addingCapabilities := func(n int, format string) map[string]interface{} {
		return map[string]interface{}{"containers": many(n, func(i int) map[string]interface{} {
			return map[string]interface{}{"name": fmt.Sprintf(format, i), "image": "nginx",
				"securityContext": map[string]interface{}{"capabilities": map[string]interface{}{"add": []interface{}{"SYS_ADMIN"}}}}
		})}
	}
	tests := []struct {
		name    string
		spec    map[string]interface{}
		feature string
		pod     map[string]interface{}
		cut     bool
	}{{
		name:    "few capabilities: not cut",
		spec:    map[string]interface{}{"capabilities": map[string]interface{}{"enabled": true}},
		feature: "capabilities",
		pod:     addingCapabilities(3, "c%d"),
	}, {
		name:    "80 containers adding capabilities (ASCII)",
		spec:    map[string]interface{}{"capabilities": map[string]interface{}{"enabled": true}},
		feature: "capabilities",
		pod:     addingCapabilities(80, "container-with-a-long-name-%03d"),
		cut:     true,
	}, {
		name:    "60 host paths with non-ASCII names",
		spec:    map[string]interface{}{"hostFilesystem": map[string]interface{}{"enabled": true}},
		feature: "hostFilesystem",
		pod: map[string]interface{}{
			"containers": []interface{}{map[string]interface{}{"name": "app", "image": "nginx"}},
			"volumes": many(60, func(i int) map[string]interface{} {
				return map[string]interface{}{"name": fmt.Sprintf("v%d", i), "hostPath": map[string]interface{}{"path": fmt.Sprintf("/データ/ボリューム/%03d/日本語のパス", i)}}
			}),
		},
		cut: true,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			engines, err := loadEngines(ctx, v, tc.spec, false)
			if err != nil {
				t.Fatal(err)
			}
			req := policytest.Request{Namespace: "shop", Object: map[string]interface{}{
				"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]interface{}{"name": "big", "namespace": "shop"},
				"spec":     tc.pod,
			}}
			celVs, err := engines.cel.Review(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			regoVs, err := engines.rego.Review(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(celVs) != 1 {
				t.Fatalf("CEL: %d results, want 1 (one per feature): %v", len(celVs), celVs)
			}
			msg := celVs[0].Message
			rego := policytest.Messages(regoVs)
			prefix := "psc/" + tc.feature + ": "
			if !strings.HasPrefix(msg, prefix) || len(msg) > 5*1024 {
				t.Fatalf("CEL message (%d bytes) does not start with %q or is over 5 KiB: %.200s", len(msg), prefix, msg)
			}
			parts := strings.Split(msg, policytest.MessageSeparator)
			if !tc.cut {
				if got := policytest.SplitMessages([]string{msg}); !slices.Equal(got, rego) {
					t.Fatalf("not cut: CEL %q, Rego %q", got, rego)
				}
				return
			}
			last := parts[len(parts)-1]
			want := fmt.Sprintf("%s%d violations in all, the rest are not listed", prefix, len(rego))
			if !strings.HasPrefix(last, want) {
				t.Fatalf("last part %q, want it to start with %q", last, want)
			}
			listed := parts[:len(parts)-1]
			if len(listed) < 10 || len(listed) >= len(rego) {
				t.Fatalf("%d of %d messages listed (message of %d bytes)", len(listed), len(rego), len(msg))
			}
			for _, m := range listed {
				if !slices.Contains(rego, m) {
					t.Errorf("listed message %q is not one of Rego's (cut in the middle?)", m)
				}
			}
			t.Logf("%d bytes, %d characters: %d of %d messages listed", len(msg), len([]rune(msg)), len(listed), len(rego))
		})
	}
}

// TestLargePodsStayWithinCostBudget: Gatekeeper gives the validations and all messageExpressions
// of one review one runtime cost budget; when the messages exhaust it, the API server's
// validator reports every feature as "failed messageExpression: … running out of cost budget".
// Deduplicating messages without a bound (a quadratic check) exhausted it from 66 containers
// that violate every feature. The all-violating sample pod scaled up must still give one
// result per feature, each with the feature's own message; the compliant pod scaled up must
// pass.
func TestLargePodsStayWithinCostBudget(t *testing.T) {
	ctx := context.Background()
	ours := fullSampleRendered(t).Objects(templates.RoleTemplate, templates.RoleConstraint)
	cel, err := policytest.NewWithEngine(ctx, policytest.EngineCEL, ours)
	if err != nil {
		t.Fatal(err)
	}
	// The same with the most exemptImages the CRD allows (64), none of which matches: every
	// container is compared with each.
	exempt := make([]interface{}, 64)
	for i := range exempt {
		exempt[i] = fmt.Sprintf("registry.example.com/team-%02d/*", i)
	}
	withExempt := fullSampleRendered(t).Objects(templates.RoleTemplate, templates.RoleConstraint)
	for _, o := range withExempt {
		if params, ok := o.Object["spec"].(map[string]interface{})["parameters"].(map[string]interface{}); ok {
			params["exemptImages"] = exempt
		}
	}
	celExempt, err := policytest.NewWithEngine(ctx, policytest.EngineCEL, withExempt)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pod    string
		times  int
		exempt bool
	}{
		{"compliant", 1, false}, {"compliant", 200, false}, {"all-violating", 1, false}, {"all-violating", 25, false}, {"all-violating", 100, false},
		{"compliant", 100, true}, {"all-violating", 50, true},
	} {
		cel := cel
		if tc.exempt {
			cel = celExempt
		}
		t.Run(fmt.Sprintf("%s x%d exemptImages %v", tc.pod, tc.times, tc.exempt), func(t *testing.T) {
			pod := scaledPod(readObject(t, filepath.Join("testdata", "pods", tc.pod+".yaml")), tc.times)
			vs, err := cel.Review(ctx, policytest.Request{Object: pod, Namespace: "shop"})
			if err != nil {
				t.Fatal(err)
			}
			if tc.pod == "compliant" {
				if len(vs) != 0 {
					t.Fatalf("%d containers: %d results, want none: %.300v", containerCount(pod), len(vs), vs)
				}
				return
			}
			seen := map[string]bool{}
			for _, v := range vs {
				f := templates.FeatureOfMessage(v.Message)
				if f == "" || seen[f] || strings.Contains(v.Message, "could not be built") {
					t.Errorf("%d containers: result %.200q is not one feature's own message", containerCount(pod), v.Message)
				}
				seen[f] = true
			}
			if len(seen) != len(templates.Features()) {
				t.Errorf("%d containers: %d features reported, want %d", containerCount(pod), len(seen), len(templates.Features()))
			}
		})
	}
}

// scaledPod repeats every container and init container of pod n times (names made unique).
func scaledPod(pod map[string]interface{}, n int) map[string]interface{} {
	p := runtime.DeepCopyJSON(pod)
	spec := p["spec"].(map[string]interface{})
	for _, field := range []string{"containers", "initContainers"} {
		cs, _ := spec[field].([]interface{})
		if len(cs) == 0 {
			continue
		}
		out := make([]interface{}, 0, n*len(cs))
		for i := 0; i < n; i++ {
			for _, c := range cs {
				c := runtime.DeepCopyJSON(c.(map[string]interface{}))
				c["name"] = fmt.Sprintf("%s-%d", c["name"], i)
				out = append(out, c)
			}
		}
		spec[field] = out
	}
	return p
}

func containerCount(pod map[string]interface{}) int {
	spec := pod["spec"].(map[string]interface{})
	n := 0
	for _, field := range []string{"containers", "initContainers", "ephemeralContainers"} {
		cs, _ := spec[field].([]interface{})
		n += len(cs)
	}
	return n
}

// TestManyHostPathMountsStayWithinCostBudget: hostFilesystem used to walk every container's
// mounts for every hostPath volume; on a compliant pod of 200 hostPath volumes mounted
// read-only by 5 containers that walk ran the match condition out of its cost budget, and the
// error denied the pod (failurePolicy Fail) where Rego admitted it. Both engines must admit it,
// and deny it with hostFilesystem's own message once one mount is writable.
func TestManyHostPathMountsStayWithinCostBudget(t *testing.T) {
	ctx := context.Background()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	engines, err := loadEngines(ctx, v, map[string]interface{}{
		"volumeTypes": map[string]interface{}{"enabled": true, "allowed": []interface{}{"hostPath"}},
		"hostFilesystem": map[string]interface{}{"enabled": true,
			"allowedHostPaths": []interface{}{map[string]interface{}{"pathPrefix": "/var/log", "readOnly": true}}},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	const volumes, containers = 200, 5
	pod := func(writable bool) map[string]interface{} {
		var vols, cs []interface{}
		for i := 0; i < volumes; i++ {
			vols = append(vols, map[string]interface{}{"name": fmt.Sprintf("v%d", i),
				"hostPath": map[string]interface{}{"path": fmt.Sprintf("/var/log/app-%d", i)}})
		}
		for c := 0; c < containers; c++ {
			var mounts []interface{}
			for i := 0; i < volumes; i++ {
				mounts = append(mounts, map[string]interface{}{"name": fmt.Sprintf("v%d", i),
					"mountPath": fmt.Sprintf("/logs/%d", i), "readOnly": !(writable && c == containers-1 && i == volumes-1)})
			}
			cs = append(cs, map[string]interface{}{"name": fmt.Sprintf("c%d", c), "image": "nginx", "volumeMounts": mounts})
		}
		return map[string]interface{}{"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]interface{}{"name": "many-mounts", "namespace": "shop"},
			"spec":     map[string]interface{}{"containers": cs, "volumes": vols}}
	}
	for _, writable := range []bool{false, true} {
		req := policytest.Request{Object: pod(writable), Namespace: "shop"}
		for _, e := range []*policytest.Evaluator{engines.cel, engines.rego} {
			vs, err := e.Review(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			msgs := policytest.Messages(vs)
			want := 0
			if writable {
				want = 1
			}
			if len(msgs) != want || (writable && !strings.HasPrefix(msgs[0], `psc/hostFilesystem: container "c4" mounts hostPath volume "v199"`)) {
				t.Errorf("writable mount %v: %d messages, want %d from hostFilesystem: %.300q", writable, len(msgs), want, msgs)
			}
		}
	}
}
