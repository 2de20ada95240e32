package templates_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

func TestZZBig2(t *testing.T) {
	ctx := context.Background()
	v, _ := validation.New()
	eng, err := loadEngines(ctx, v, map[string]interface{}{
		"volumeTypes":    map[string]interface{}{"enabled": true, "allowed": []interface{}{"hostPath", "configMap"}},
		"hostFilesystem": map[string]interface{}{"enabled": true, "allowedHostPaths": []interface{}{map[string]interface{}{"pathPrefix": "/var/log", "readOnly": true}}},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{100, 200, 300, 500, 1000} {
		for _, containers := range []int{1, 5} {
			var vols, cs []interface{}
			for i := 0; i < n; i++ {
				vols = append(vols, map[string]interface{}{"name": fmt.Sprintf("v%d", i), "hostPath": map[string]interface{}{"path": fmt.Sprintf("/var/log/x%d", i)}})
			}
			for c := 0; c < containers; c++ {
				var mounts []interface{}
				for i := 0; i < n; i++ {
					mounts = append(mounts, map[string]interface{}{"name": fmt.Sprintf("v%d", i), "mountPath": fmt.Sprintf("/m/%d", i), "readOnly": true})
				}
				cs = append(cs, map[string]interface{}{"name": fmt.Sprintf("c%d", c), "image": "nginx", "volumeMounts": mounts})
			}
			pod := map[string]interface{}{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]interface{}{"name": "p", "namespace": "shop"},
				"spec": map[string]interface{}{"containers": cs, "volumes": vols}}
			cv, err1 := eng.cel.Review(ctx, policytest.Request{Object: pod, Namespace: "shop"})
			rv, err2 := eng.rego.Review(ctx, policytest.Request{Object: pod, Namespace: "shop"})
			m := ""
			if len(cv) > 0 {
				m = fmt.Sprintf("%.120s", cv[0].Message)
			}
			t.Logf("%d volumes x %d containers: cel %d %v %q | rego %d %v", n, containers, len(cv), err1, m, len(rv), err2)
		}
	}
}
