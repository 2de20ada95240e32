package pspconvert_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1/validation"
	"github.com/podsecurity/psc-operator/pspconvert"
	"github.com/podsecurity/psc-operator/templates"
	"github.com/podsecurity/psc-operator/templates/policytest"
)

// Pods of the classic PodSecurityPolicy tutorials.
var (
	// mariadb runs as whatever its image says (root): no runAsUser, no runAsNonRoot.
	mariadb = `{metadata: {name: mariadb, namespace: default}, spec: {containers: [{name: mariadb, image: mariadb:11, ports: [{containerPort: 3306}]}]}}`
	// mariadbNonRoot is the same pod told to run as a non-root user.
	mariadbNonRoot = `{metadata: {name: mariadb, namespace: default}, spec: {securityContext: {runAsUser: 999, runAsNonRoot: true}, containers: [{name: mariadb, image: mariadb:11}]}}`
	// wordpress keeps its content on a persistentVolumeClaim.
	wordpress = `{metadata: {name: wordpress, namespace: default}, spec: {containers: [{name: wordpress, image: wordpress:6, volumeMounts: [{name: html, mountPath: /var/www/html}]}], volumes: [{name: html, persistentVolumeClaim: {claimName: wordpress}}]}}`
	// wordpressNFS keeps it on NFS.
	wordpressNFS = `{metadata: {name: wordpress, namespace: default}, spec: {containers: [{name: wordpress, image: wordpress:6, volumeMounts: [{name: html, mountPath: /var/www/html}]}], volumes: [{name: html, nfs: {server: nfs.example.com, path: /wordpress}}]}}`
	// mysqlHostPort binds 3306 on the node.
	mysqlHostPort = `{metadata: {name: mysql, namespace: default}, spec: {containers: [{name: mysql, image: mysql:8, ports: [{containerPort: 3306, hostPort: 3306}]}]}}`
	// mysqlHostPort8080 binds another port on the node.
	mysqlHostPort8080 = `{metadata: {name: mysql, namespace: default}, spec: {containers: [{name: mysql, image: mysql:8, ports: [{containerPort: 3306, hostPort: 8080}]}]}}`
)

func TestConvertTutorialPolicies(t *testing.T) {
	for _, tc := range []struct {
		file    string
		spec    string // fragments the converted spec must contain, as YAML lines
		denied  []string
		allowed []string
	}{
		{file: "restrict-root.yaml", spec: "runAsUser:\n      rule: MustRunAsNonRoot", denied: []string{mariadb, wordpress}, allowed: []string{mariadbNonRoot}},
		{file: "restrict-volumes.yaml", spec: "volumeTypes:\n    allowed:\n      - nfs", denied: []string{wordpress}, allowed: []string{wordpressNFS, mariadb}},
		{file: "restrict-ports.yaml", spec: "hostPorts:\n      - max: 0\n        min: 0", denied: []string{mysqlHostPort}, allowed: []string{mariadb}},
		{file: "permit-port-3306.yaml", spec: "hostPorts:\n      - max: 3306\n        min: 3306", denied: []string{mysqlHostPort8080}, allowed: []string{mysqlHostPort, mariadb}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out := convertFile(t, tc.file)
			if !strings.Contains(string(out), tc.spec) {
				t.Errorf("converted manifest lacks %q:\n%s", tc.spec, out)
			}
			if !strings.Contains(string(out), "# Not expressible: PodSecurityPolicy applied to the pods whose creator") {
				t.Errorf("converted manifest does not say that RBAC-based selection is not expressible:\n%s", out)
			}
			ev := load(t, out)
			for _, pod := range tc.denied {
				if v := review(t, ev, pod); len(v) == 0 {
					t.Errorf("pod admitted under converted %s: %s", tc.file, pod)
				}
			}
			for _, pod := range tc.allowed {
				if v := review(t, ev, pod); len(v) > 0 {
					t.Errorf("pod denied under converted %s: %v\n%s", tc.file, v, pod)
				}
			}
		})
	}
}

// Several policies become one CR that admits what any of them admits, and says so.
func TestConvertCombinesPolicies(t *testing.T) {
	var docs []string
	for _, f := range []string{"restrict-ports.yaml", "permit-port-3306.yaml", "restrict-volumes.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(data))
	}
	out, err := pspconvert.Convert(context.Background(), []byte(strings.Join(docs, "\n---\n")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Converted from PodSecurityPolicy restrict-ports, permit-port-3306, restrict-volumes",
		"# Combined: PodSecurityPolicy admitted a pod that any one of its policies admitted",
		"- max: 3306\n        min: 3306",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("combined manifest lacks %q:\n%s", want, out)
		}
	}
	ev := load(t, out)
	// Port 3306 from permit-port-3306, any volume from the policies with "*".
	for _, pod := range []string{mysqlHostPort, wordpress} {
		if v := review(t, ev, pod); len(v) > 0 {
			t.Errorf("pod denied under the combined policies: %v\n%s", v, pod)
		}
	}
	if v := review(t, ev, mysqlHostPort8080); len(v) == 0 {
		t.Error("host port 8080 admitted, but no policy allows it")
	}
}

// Fields that cannot be expressed get a comment where they would be.
func TestConvertComments(t *testing.T) {
	psp := `apiVersion: policy/v1beta1
kind: PodSecurityPolicy
metadata:
  name: restricted
  annotations:
    seccomp.security.alpha.kubernetes.io/allowedProfileNames: 'docker/default,runtime/default'
    seccomp.security.alpha.kubernetes.io/defaultProfileName: 'runtime/default'
    apparmor.security.beta.kubernetes.io/allowedProfileNames: 'runtime/default'
spec:
  privileged: false
  allowPrivilegeEscalation: false
  requiredDropCapabilities: [ALL]
  defaultAddCapabilities: [cap_chown]
  volumes: [configMap, emptyDir, projected, secret, downwardAPI, persistentVolumeClaim]
  hostPID: true
  runAsUser: {rule: MustRunAs, ranges: [{min: 1, max: 65535}]}
  seLinux: {rule: RunAsAny}
  supplementalGroups: {rule: MustRunAs, ranges: [{min: 1, max: 65535}]}
  fsGroup: {rule: MayRunAs, ranges: [{min: 1, max: 65535}]}
  allowedCSIDrivers: [{name: csi.example.com}]
  runtimeClass: {allowedRuntimeClassNames: [gvisor]}
  readOnlyRootFilesystem: false
`
	out, err := pspconvert.Convert(context.Background(), []byte(psp))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"seccomp.security.alpha.kubernetes.io/defaultProfileName=runtime/default, a default the operator does not apply",
		"restricts runtimeClass, which no feature can express",
		"allows only one of hostPID and hostIPC",
		"restricts CSI drivers (allowedCSIDrivers), which no feature can express",
		"PodSecurityPolicy filled in runAsUser from the first range",
		"adds defaultAddCapabilities [cap_chown]",
		"allowedCapabilities:\n      - CHOWN",
		"allowedProfiles:\n      - RuntimeDefault",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("manifest lacks %q:\n%s", want, out)
		}
	}
	load(t, out) // valid and loadable
}

func TestConvertRejectsBadInput(t *testing.T) {
	for name, input := range map[string]string{
		"empty":          "",
		"not YAML":       "{{{",
		"not a PSP":      "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
		"unknown field":  "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata: {name: x}\nspec: {privilegd: true}\n",
		"second not PSP": "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata: {name: x}\nspec: {}\n---\nkind: ConfigMap\napiVersion: v1\n",
	} {
		t.Run(name, func(t *testing.T) {
			if out, err := pspconvert.Convert(context.Background(), []byte(input)); err == nil {
				t.Errorf("converted bad input:\n%s", out)
			}
		})
	}
}

func convertFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	out, err := pspconvert.Convert(context.Background(), data)
	if err != nil {
		t.Fatalf("converting %s: %v", name, err)
	}
	return out
}

// load validates the manifest like the API server, renders it and loads it into the engine.
func load(t *testing.T, manifest []byte) *policytest.Evaluator {
	t.Helper()
	obj := map[string]interface{}{}
	if err := yaml.Unmarshal(manifest, &obj); err != nil {
		t.Fatal(err)
	}
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	psc, errs := v.DefaultAndValidate(context.Background(), obj)
	if len(errs) > 0 {
		t.Fatalf("converted manifest is invalid: %v", errs.ToAggregate())
	}
	rendered, err := templates.Render(&psc.Spec, templates.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := policytest.New(context.Background(), rendered.Objects(templates.RoleTemplate, templates.RoleConstraint))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func review(t *testing.T, ev *policytest.Evaluator, pod string) []string {
	t.Helper()
	obj := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(pod), &obj); err != nil {
		t.Fatal(err)
	}
	got, err := ev.Review(context.Background(), policytest.Request{Object: obj})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, v := range policytest.Denied(got) {
		msgs = append(msgs, v.Message)
	}
	return msgs
}
