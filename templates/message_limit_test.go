package templates_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
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
		pod: map[string]interface{}{"containers": many(3, func(i int) map[string]interface{} {
			return map[string]interface{}{"name": fmt.Sprintf("c%d", i), "image": "nginx",
				"securityContext": map[string]interface{}{"capabilities": map[string]interface{}{"add": []interface{}{"SYS_ADMIN"}}}}
		})},
	}, {
		name:    "80 containers adding capabilities (ASCII)",
		spec:    map[string]interface{}{"capabilities": map[string]interface{}{"enabled": true}},
		feature: "capabilities",
		pod: map[string]interface{}{"containers": many(80, func(i int) map[string]interface{} {
			return map[string]interface{}{"name": fmt.Sprintf("container-with-a-long-name-%03d", i), "image": "nginx",
				"securityContext": map[string]interface{}{"capabilities": map[string]interface{}{"add": []interface{}{"SYS_ADMIN"}}}}
		})},
		cut: true,
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
