package charts

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// helmLabels are Helm's bookkeeping labels; they are the only difference the chart may have
// from config/default (on object metadata only: selectors and pod labels must be equal).
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/name"}

func tool(t *testing.T, env, hint string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run the tests with `make test` (%s)", env, hint)
	}
	return p
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// objects splits a multi-document YAML stream into objects keyed by kind/namespace/name.
func objects(t *testing.T, stream []byte) map[string]map[string]interface{} {
	t.Helper()
	out := map[string]map[string]interface{}{}
	for _, doc := range strings.Split(string(stream), "\n---") {
		obj := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("parsing %q: %v", doc, err)
		}
		if len(obj) == 0 {
			continue
		}
		meta, _ := obj["metadata"].(map[string]interface{})
		key := fmt.Sprintf("%v/%v/%v", obj["kind"], meta["namespace"], meta["name"])
		if _, dup := out[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		out[key] = obj
	}
	return out
}

func withoutHelmLabels(obj map[string]interface{}) map[string]interface{} {
	meta, _ := obj["metadata"].(map[string]interface{})
	labels, _ := meta["labels"].(map[string]interface{})
	for _, l := range helmLabels {
		delete(labels, l)
	}
	if labels != nil && len(labels) == 0 {
		delete(meta, "labels")
	}
	return obj
}

func keys(m map[string]map[string]interface{}) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestChartMatchesKustomize renders the chart with its defaults (plus the namespace, which
// config/default creates) and checks every object against config/default built by kustomize,
// field by field. The CRD and the ClusterRole rules are controller-gen's output, synced into
// the chart by `make manifests`: a marker changed without it fails here.
func TestChartMatchesKustomize(t *testing.T) {
	helm := tool(t, "PSC_HELM", "make helm builds it")
	kubectl := filepath.Join(tool(t, "KUBEBUILDER_ASSETS", "make test-assets builds kubectl"), "kubectl")

	kustomized := objects(t, run(t, kubectl, "kustomize", filepath.Join("..", "config", "default")))
	rendered := objects(t, run(t, helm, "template", "psc-operator", "psc-operator", "--namespace", "psc-system", "--kube-version", "v1.30.0",
		"--include-crds", "--set", "namespace.create=true"))
	if got, want := keys(rendered), keys(kustomized); !cmp.Equal(got, want) {
		t.Fatalf("objects differ (-chart +kustomize):\n%s", cmp.Diff(got, want))
	}
	for key, obj := range rendered {
		labels, _ := obj["metadata"].(map[string]interface{})["labels"].(map[string]interface{})
		if strings.HasPrefix(key, "CustomResourceDefinition/") {
			continue // crds/ is not templated
		}
		if labels["app.kubernetes.io/managed-by"] == nil {
			t.Errorf("%s lacks Helm's labels", key)
		}
	}
	for key, want := range kustomized {
		got := rendered[key]
		if diff := cmp.Diff(withoutHelmLabels(got), withoutHelmLabels(want)); diff != "" {
			t.Errorf("%s differs (-chart +kustomize):\n%s", key, diff)
		}
	}
}

// TestChartValues renders the chart with non-default values and checks that each lands where
// it should.
func TestChartValues(t *testing.T) {
	helm := tool(t, "PSC_HELM", "make helm builds it")
	out := run(t, helm, "template", "ops", "psc-operator", "--namespace", "policy", "--kube-version", "v1.36.2",
		"--set", "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"--set", "replicaCount=1", "--set", "leaderElection.enabled=false",
		"--set", "statusRefreshInterval=1m", "--set", "logLevel=debug",
		"--set", "gatekeeperNamespace=opa", "--set", "extraArgs={--zap-encoder=console}",
		"--set", "resources.limits.memory=128Mi", "--set", "argocd.healthCheck.enabled=true")
	objs := objects(t, out)
	deploy := objs["Deployment/policy/ops-psc-operator"]
	if deploy == nil {
		t.Fatalf("no Deployment ops-psc-operator in %v", keys(objs))
	}
	spec := deploy["spec"].(map[string]interface{})
	if spec["replicas"] != float64(1) {
		t.Errorf("replicas %v, want 1", spec["replicas"])
	}
	pod := spec["template"].(map[string]interface{})["spec"].(map[string]interface{})
	c := pod["containers"].([]interface{})[0].(map[string]interface{})
	if img := c["image"]; img != "ghcr.io/podsecurity/psc-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
		t.Errorf("image %v", img)
	}
	wantArgs := []interface{}{"--leader-elect=false", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
		"--gatekeeper-namespace=opa", "--status-refresh-interval=1m", "--zap-log-level=debug", "--zap-encoder=console"}
	if diff := cmp.Diff(c["args"], wantArgs); diff != "" {
		t.Errorf("args (-got +want):\n%s", diff)
	}
	if mem := c["resources"].(map[string]interface{})["limits"].(map[string]interface{})["memory"]; mem != "128Mi" {
		t.Errorf("memory limit %v, want 128Mi", mem)
	}
	if pod["serviceAccountName"] != "ops-psc-operator" {
		t.Errorf("service account %v", pod["serviceAccountName"])
	}
	if objs["Namespace/<nil>/policy"] != nil {
		t.Error("the namespace is rendered although namespace.create is false")
	}
	cm := objs["ConfigMap/argocd/ops-psc-operator-argocd-health"]
	if cm == nil {
		t.Fatalf("no Argo CD health ConfigMap in %v", keys(objs))
	}
	lua, err := os.ReadFile(filepath.Join("..", "config", "argocd", "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	got := cm["data"].(map[string]interface{})["resource.customizations.health.policy.podsecurity.dev_PodSecurityConstraints"]
	if strings.TrimSpace(fmt.Sprint(got)) != strings.TrimSpace(string(lua)) {
		t.Error("the Argo CD health check in the chart differs from config/argocd/health.lua: run make manifests")
	}
}
