package templates_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// Where the time of the all-violating review goes, measured by replacing parts of the
// rendered policy template's CEL (README, "Why the all-violating pod stays above 0.5×"). Each
// variant is loaded in its own client next to gatekeeper-library and reviewed interleaved
// with it, like BenchmarkLibraryInterleaved.

// templateVariants change the K8sNativeValidation source of the policy template.
var templateVariants = map[string]func(src map[string]interface{}){
	// as rendered
	"asis": func(map[string]interface{}) {},
	// every validation false, every message constant, no match condition: what is left is
	// the cost of a constraint whose template has 17 validations, and Gatekeeper's own work
	"fixed": func(src map[string]interface{}) {
		eachValidation(src, func(v map[string]interface{}) {
			v["expression"] = "false"
			v["messageExpression"] = `"m"`
		})
		src["matchCondition"] = []interface{}{map[string]interface{}{"name": "all", "expression": "true"}}
	},
	// the match condition and the validations as rendered, every message constant: fixed plus
	// the validations' pass
	"validations": func(src map[string]interface{}) {
		eachValidation(src, func(v map[string]interface{}) { v["messageExpression"] = `"m"` })
	},
	// every validation false, no match condition, the messages as rendered: fixed plus the
	// messages' pass
	"messages": func(src map[string]interface{}) {
		eachValidation(src, func(v map[string]interface{}) { v["expression"] = "false" })
		src["matchCondition"] = []interface{}{map[string]interface{}{"name": "all", "expression": "true"}}
	},
	// as rendered, but every message is its format string, unformatted ("…".format([…]) becomes
	// "…"), and a feature's messages are joined without deduplication: what finding every
	// violation costs when the messages carry no detail
	"plain-messages": func(src map[string]interface{}) {
		vars, _ := src["variables"].([]interface{})
		for _, v := range vars {
			if m, ok := v.(map[string]interface{}); ok && strings.HasSuffix(fmt.Sprint(m["name"]), "_violations") {
				m["expression"] = withoutFormat(fmt.Sprint(m["expression"]))
			}
		}
		eachValidation(src, func(v map[string]interface{}) {
			violations := strings.Replace(fmt.Sprint(v["expression"]), "!variables.", "variables.", 1)
			v["messageExpression"] = strings.TrimSuffix(violations, "_violating") + `_violations.join("; ")`
		})
	},
}

// withoutFormat removes the .format([…]) call after every format string of a CEL expression,
// skipping string literals while it matches the brackets of the argument list.
func withoutFormat(expr string) string {
	const call = ".format("
	var out strings.Builder
	for {
		i := strings.Index(expr, call)
		if i < 0 {
			out.WriteString(expr)
			return out.String()
		}
		out.WriteString(expr[:i])
		depth, j := 0, i+len(call)-1
		for ; j < len(expr); j++ {
			switch c := expr[j]; c {
			case '"', '\'':
				for j++; j < len(expr) && expr[j] != c; j++ {
					if expr[j] == '\\' {
						j++
					}
				}
			case '(', '[', '{':
				depth++
			case ')', ']', '}':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		expr = expr[j+1:]
	}
}

func eachValidation(src map[string]interface{}, f func(map[string]interface{})) {
	vals, _ := src["validations"].([]interface{})
	for _, v := range vals {
		if m, ok := v.(map[string]interface{}); ok {
			f(m)
		}
	}
}

// withVariant is a copy of the objects whose ConstraintTemplates have their CEL source changed.
func withVariant(tb testing.TB, objs []*unstructured.Unstructured, change func(map[string]interface{})) []*unstructured.Unstructured {
	tb.Helper()
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		o = o.DeepCopy()
		out[i] = o
		if o.GetKind() != "ConstraintTemplate" {
			continue
		}
		targets, _, err := unstructured.NestedSlice(o.Object, "spec", "targets")
		if err != nil || len(targets) != 1 {
			tb.Fatalf("template %s: want one target (%v)", o.GetName(), err)
		}
		code, _ := targets[0].(map[string]interface{})["code"].([]interface{})
		changed := false
		for _, c := range code {
			if cm, ok := c.(map[string]interface{}); ok && cm["engine"] == string(policytest.EngineCEL) {
				change(cm["source"].(map[string]interface{}))
				changed = true
			}
		}
		if !changed {
			tb.Fatalf("template %s has no %s code", o.GetName(), policytest.EngineCEL)
		}
		if err := unstructured.SetNestedSlice(o.Object, targets, "spec", "targets"); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// BenchmarkTemplateVariants reviews the all-violating pod with gatekeeper-library (Gatekeeper's
// default engines) and with each variant of PSC_BENCH_VARIANTS (comma-separated names of
// templateVariants; all when empty), interleaved, and prints the p50 of each and its ratio to
// the library. Needs PSC_GATEKEEPER_LIBRARY and PSC_BENCH_INTERLEAVED, e.g.
//
//	PSC_BENCH_INTERLEAVED=1 PSC_GATEKEEPER_LIBRARY=<checkout> go test -run '^$' \
//	  -bench BenchmarkTemplateVariants -benchtime=300x ./templates/
func BenchmarkTemplateVariants(b *testing.B) {
	if os.Getenv("PSC_BENCH_INTERLEAVED") == "" {
		b.Skip("PSC_BENCH_INTERLEAVED is not set: this runs with a fixed number of iterations (-benchtime=300x)")
	}
	root := libraryRoot(b)
	rendered := fullSampleRendered(b)
	lib, _ := libraryObjects(b, root, excludedOf(b, rendered))
	ours := rendered.Objects(templates.RoleTemplate, templates.RoleConstraint)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range templateVariants {
			if !yield(n) {
				return
			}
		}
	})
	if s := os.Getenv("PSC_BENCH_VARIANTS"); s != "" {
		names = strings.Split(s, ",")
	}
	ctx := context.Background()
	pod := readObject(b, filepath.Join("testdata", "pods", "all-violating.yaml"))
	load := func(name string, objs []*unstructured.Unstructured) benchSide {
		ev, err := policytest.NewWithEngine(ctx, policytest.EngineCEL, objs)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		// Every variant must still catch the pod with every feature: a variant that failed to
		// compile would be fast for the wrong reason.
		vs, err := ev.Review(ctx, policytest.Request{Object: pod, Namespace: "shop"})
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		if name != "library" && len(vs) != len(templates.Features()) {
			b.Fatalf("%s: %d violations on the all-violating pod, want one per feature (%d)", name, len(vs), len(templates.Features()))
		}
		return benchSide{name, ev}
	}
	sides := []benchSide{load("library", lib)}
	for _, name := range names {
		change, ok := templateVariants[name]
		if !ok {
			b.Fatalf("PSC_BENCH_VARIANTS: no variant %q", name)
		}
		sides = append(sides, load(name, withVariant(b, ours, change)))
	}
	p50, n := interleavedP50(b, sides, pod)
	fmt.Printf("all-violating pod, template variants, %d reviews each (load average %s):\n", n, loadAverage())
	for k, s := range sides {
		fmt.Printf("  %-15s %8.3f ms  %5.2fx library/default\n", s.name, float64(p50[k])/1e6, float64(p50[k])/float64(p50[0]))
	}
}
