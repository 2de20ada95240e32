package templates_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

func TestZZBig(t *testing.T) {
	ctx := context.Background()
	ours := fullSampleRendered(t).Objects(templates.RoleTemplate, templates.RoleConstraint)
	cel, _ := policytest.NewWithEngine(ctx, policytest.EngineCEL, ours)
	rego, _ := policytest.NewWithEngine(ctx, policytest.EngineRego, ours)
	base := readObject(t, filepath.Join("testdata", "pods", "compliant.yaml"))
	for _, n := range []int{10, 100, 300, 1000} {
		for _, kind := range []string{"volumes", "ports", "hostpathvolumes", "supgroups", "sysctls", "caps"} {
			p := runtime.DeepCopyJSON(base)
			spec := p["spec"].(map[string]interface{})
			c0 := spec["containers"].([]interface{})[0].(map[string]interface{})
			switch kind {
			case "volumes", "hostpathvolumes":
				var vols, mounts []interface{}
				for i := 0; i < n; i++ {
					v := map[string]interface{}{"name": fmt.Sprintf("v%d", i), "configMap": map[string]interface{}{"name": "x"}}
					if kind == "hostpathvolumes" {
						v = map[string]interface{}{"name": fmt.Sprintf("v%d", i), "hostPath": map[string]interface{}{"path": fmt.Sprintf("/var/log/x%d", i)}}
					}
					vols = append(vols, v)
					mounts = append(mounts, map[string]interface{}{"name": fmt.Sprintf("v%d", i), "mountPath": fmt.Sprintf("/m/%d", i), "readOnly": true})
				}
				ex, _ := spec["volumes"].([]interface{})
				spec["volumes"] = append(ex, vols...)
				em, _ := c0["volumeMounts"].([]interface{})
				c0["volumeMounts"] = append(em, mounts...)
			case "ports":
				var ps []interface{}
				for i := 0; i < n; i++ {
					ps = append(ps, map[string]interface{}{"containerPort": int64(10000 + i)})
				}
				c0["ports"] = ps
			case "supgroups":
				sc, _ := spec["securityContext"].(map[string]interface{})
				if sc == nil {
					sc = map[string]interface{}{}
					spec["securityContext"] = sc
				}
				var gs []interface{}
				for i := 0; i < n; i++ {
					gs = append(gs, int64(1000+i))
				}
				sc["supplementalGroups"] = gs
			case "sysctls":
				sc, _ := spec["securityContext"].(map[string]interface{})
				if sc == nil {
					sc = map[string]interface{}{}
					spec["securityContext"] = sc
				}
				var ss []interface{}
				for i := 0; i < n; i++ {
					ss = append(ss, map[string]interface{}{"name": fmt.Sprintf("net.ipv4.ip_local_port_range%d", i), "value": "1"})
				}
				sc["sysctls"] = ss
			case "caps":
				sc, _ := c0["securityContext"].(map[string]interface{})
				caps, _ := sc["capabilities"].(map[string]interface{})
				var cs []interface{}
				for i := 0; i < n; i++ {
					cs = append(cs, "ALL")
				}
				caps["drop"] = cs
			}
			cv, err1 := cel.Review(ctx, policytest.Request{Object: p, Namespace: "shop"})
			rv, err2 := rego.Review(ctx, policytest.Request{Object: p, Namespace: "shop"})
			cm, rm := policytest.Messages(cv), policytest.Messages(rv)
			f := func(ms []string) string {
				if len(ms) == 0 {
					return ""
				}
				return fmt.Sprintf("%.150s", ms[0])
			}
			t.Logf("%s x%d: cel %d %v %q | rego %d %v %q", kind, n, len(cm), err1, f(cm), len(rm), err2, f(rm))
		}
	}
}
