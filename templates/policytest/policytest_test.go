package policytest

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// privilegedTemplate is a Rego v1 template in the shape Gatekeeper v3.19+
// accepts: spec.targets[].code[{engine: Rego, source: {version: "v1",
// rego, libs}}] and no spec.targets[].rego. The lib is also Rego v1.
const privilegedTemplate = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: testprivileged
spec:
  crd:
    spec:
      names:
        kind: TestPrivileged
      validation:
        openAPIV3Schema:
          type: object
          properties:
            reason:
              type: string
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package testprivileged

              import data.lib.containers

              violation contains {"msg": msg, "details": {"container": c.name}} if {
                some c in containers.all
                c.securityContext.privileged
                msg := sprintf("%s: %s", [input.parameters.reason, c.name])
              }
            libs:
              - |
                package lib.containers

                all contains c if some c in input.review.object.spec.containers
                all contains c if some c in input.review.object.spec.initContainers
                all contains c if some c in input.review.object.spec.ephemeralContainers
`

// probeTemplate reports what the Rego sees in input as a JSON message.
const probeTemplate = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: testinputprobe
spec:
  crd:
    spec:
      names:
        kind: TestInputProbe
      validation:
        openAPIV3Schema:
          type: object
          properties:
            tag:
              type: string
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package testinputprobe

              violation contains {"msg": json.marshal(probe)} if {
                probe := {
                  "operation": input.review.operation,
                  "subResource": object.get(input.review, "subResource", "<absent>"),
                  "kind": input.review.kind.kind,
                  "resource": input.review.resource.resource,
                  "name": input.review.name,
                  "namespace": input.review.namespace,
                  "objectNamespace": object.get(input.review, ["object", "metadata", "namespace"], ""),
                  "hasOldObject": object.get(input.review, "oldObject", null) != null,
                  "oldEphemeral": count(object.get(input.review, ["oldObject", "spec", "ephemeralContainers"], [])),
                  "newEphemeral": count(object.get(input.review, ["object", "spec", "ephemeralContainers"], [])),
                  "username": object.get(input.review, ["userInfo", "username"], "<absent>"),
                  "nsObjectName": object.get(input.review, ["namespaceObject", "metadata", "name"], ""),
                  "nsTeam": object.get(input.review, ["namespaceObject", "metadata", "labels", "team"], ""),
                  "tag": input.parameters.tag,
                }
              }
`

// legacyTemplate uses the classic spec.targets[].rego field (Rego v0).
const legacyTemplate = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: testlegacy
spec:
  crd:
    spec:
      names:
        kind: TestLegacy
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package testlegacy

        violation[{"msg": msg}] {
          input.review.object.spec.hostNetwork
          msg := "hostNetwork (v0)"
        }
`

// legacyFutureTemplate uses the spec.targets[].rego field (parsed as v0)
// with "import future.keywords", which enables contains/if/in inside a v0
// module. ("import rego.v1" is rejected by the frameworks' rego rewriter.)
const legacyFutureTemplate = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: testlegacyfuture
spec:
  crd:
    spec:
      names:
        kind: TestLegacyFuture
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package testlegacyfuture

        import future.keywords

        violation contains {"msg": "hostNetwork (v0 + future.keywords)"} if {
          some c in input.review.object.spec.containers
          c.name == "app"
          input.review.object.spec.hostNetwork
        }
`

// bothTemplate sets both spec.targets[].rego and a Rego code entry. The
// frameworks' v1 conversion replaces the code entry's source with the rego
// field (dropping version), so only the rego field's policy runs.
const bothTemplate = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: testboth
spec:
  crd:
    spec:
      names:
        kind: TestBoth
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package testboth

        violation[{"msg": "from rego field"}] {
          input.review.object.spec.hostNetwork
        }
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package testboth

              violation contains {"msg": "from code"} if input.review.object.spec.hostNetwork
`

// createOnlyTemplate limits the template to CREATE via spec.targets[].operations.
const createOnlyTemplate = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: testcreateonly
spec:
  crd:
    spec:
      names:
        kind: TestCreateOnly
  targets:
    - target: admission.k8s.gatekeeper.sh
      operations: ["CREATE"]
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package testcreateonly

              violation contains {"msg": "create only"} if input.review.object.spec.hostNetwork
`

func mustYAML(t testing.TB, s string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return u
}

// templateWithRego returns a v1 template named/kinded after name whose
// target has the given YAML body (indented under the target item).
func templateWithRego(t testing.TB, name, kind, targetBody string) *unstructured.Unstructured {
	t.Helper()
	return mustYAML(t, `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: `+name+`
spec:
  crd:
    spec:
      names:
        kind: `+kind+`
  targets:
    - target: admission.k8s.gatekeeper.sh
`+targetBody)
}

func constraint(kind, name string, spec map[string]interface{}) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "constraints.gatekeeper.sh/v1beta1",
		"kind":       kind,
		"metadata":   map[string]interface{}{"name": name},
		"spec":       spec,
	}}
	return u
}

var podKinds = []interface{}{map[string]interface{}{"apiGroups": []interface{}{""}, "kinds": []interface{}{"Pod"}}}

func noPriv(name, action string, extraMatch map[string]interface{}) *unstructured.Unstructured {
	match := map[string]interface{}{
		"kinds":              podKinds,
		"excludedNamespaces": []interface{}{"kube-*", "ops"},
	}
	for k, v := range extraMatch {
		match[k] = v
	}
	spec := map[string]interface{}{
		"match":      match,
		"parameters": map[string]interface{}{"reason": "privileged container not allowed"},
	}
	if action != "" {
		spec["enforcementAction"] = action
	}
	return constraint("TestPrivileged", name, spec)
}

func pod(ns string, mutate func(spec map[string]interface{})) map[string]interface{} {
	md := map[string]interface{}{"name": "p1"}
	if ns != "" {
		md["namespace"] = ns
	}
	spec := map[string]interface{}{
		"containers": []interface{}{
			map[string]interface{}{"name": "app", "image": "nginx", "securityContext": map[string]interface{}{"runAsUser": 1000}},
		},
	}
	if mutate != nil {
		mutate(spec)
	}
	return map[string]interface{}{"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}
}

func privileged(spec map[string]interface{}) {
	spec["containers"] = append(spec["containers"].([]interface{}),
		map[string]interface{}{"name": "root", "image": "busybox", "securityContext": map[string]interface{}{"privileged": true}})
}

func hostNetwork(spec map[string]interface{}) { spec["hostNetwork"] = true }

func withEphemeral(privilegedEC bool) func(map[string]interface{}) {
	return func(spec map[string]interface{}) {
		sc := map[string]interface{}{"privileged": privilegedEC}
		spec["ephemeralContainers"] = []interface{}{
			map[string]interface{}{"name": "debugger", "image": "busybox", "securityContext": sc},
		}
	}
}

func deny(name, container string) Violation {
	return Violation{Kind: "TestPrivileged", Constraint: name, EnforcementAction: "deny",
		Message: "privileged container not allowed: " + container}
}

func TestReview(t *testing.T) {
	ctx := context.Background()
	priv := mustYAML(t, privilegedTemplate)

	tests := []struct {
		name       string
		objs       []*unstructured.Unstructured
		req        Request
		want       []Violation
		wantDenied int
	}{
		{
			name:       "privileged pod CREATE is denied",
			objs:       []*unstructured.Unstructured{priv, noPriv("no-priv", "", nil)},
			req:        Request{Object: pod("apps", privileged)},
			want:       []Violation{deny("no-priv", "root")},
			wantDenied: 1,
		},
		{
			name: "constraint given before template still loads",
			objs: []*unstructured.Unstructured{noPriv("no-priv", "deny", nil), priv},
			req:  Request{Object: pod("apps", privileged)},
			want: []Violation{deny("no-priv", "root")}, wantDenied: 1,
		},
		{
			name: "privileged initContainer found via v1 lib",
			objs: []*unstructured.Unstructured{priv, noPriv("no-priv", "", nil)},
			req: Request{Object: pod("apps", func(s map[string]interface{}) {
				s["initContainers"] = []interface{}{map[string]interface{}{"name": "init", "securityContext": map[string]interface{}{"privileged": true}}}
			})},
			want: []Violation{deny("no-priv", "init")}, wantDenied: 1,
		},
		{
			name: "compliant pod is allowed",
			objs: []*unstructured.Unstructured{priv, noPriv("no-priv", "", nil)},
			req:  Request{Object: pod("apps", nil)},
			want: nil,
		},
		{
			name: "excludedNamespaces exact match skips pod",
			objs: []*unstructured.Unstructured{priv, noPriv("no-priv", "", nil)},
			req:  Request{Object: pod("ops", privileged)},
			want: nil,
		},
		{
			name: "excludedNamespaces kube-* glob skips kube-system",
			objs: []*unstructured.Unstructured{priv, noPriv("no-priv", "", nil)},
			req:  Request{Object: pod("kube-system", privileged)},
			want: nil,
		},
		{
			name: "kube-* glob does not match kubernetes-dashboard",
			objs: []*unstructured.Unstructured{priv, noPriv("no-priv", "", nil)},
			req:  Request{Object: pod("kubernetes-dashboard", privileged)},
			want: []Violation{deny("no-priv", "root")}, wantDenied: 1,
		},
		{
			name: "Request.Namespace used when object has none (excluded)",
			objs: []*unstructured.Unstructured{priv, noPriv("no-priv", "", nil)},
			req:  Request{Namespace: "kube-public", Object: pod("", privileged)},
			want: nil,
		},
		{
			name: "object without namespace defaults to 'default'",
			objs: []*unstructured.Unstructured{priv, noPriv("no-priv", "", map[string]interface{}{"namespaces": []interface{}{"default"}})},
			req:  Request{Object: pod("", privileged)},
			want: []Violation{deny("no-priv", "root")}, wantDenied: 1,
		},
		{
			name: "spec.match.kinds not matching Pod skips pod",
			objs: []*unstructured.Unstructured{priv, noPriv("deploy-only", "", map[string]interface{}{
				"kinds": []interface{}{map[string]interface{}{"apiGroups": []interface{}{"apps"}, "kinds": []interface{}{"Deployment"}}},
			})},
			req:  Request{Object: pod("apps", privileged)},
			want: nil,
		},
		{
			name: "namespaceSelector matches namespace labels",
			objs: []*unstructured.Unstructured{priv, noPriv("payments", "", map[string]interface{}{
				"namespaceSelector": map[string]interface{}{"matchLabels": map[string]interface{}{"team": "payments"}},
			})},
			req:  Request{Object: pod("pay", privileged), NamespaceLabels: map[string]string{"team": "payments"}},
			want: []Violation{deny("payments", "root")}, wantDenied: 1,
		},
		{
			name: "namespaceSelector not matching skips pod",
			objs: []*unstructured.Unstructured{priv, noPriv("payments", "", map[string]interface{}{
				"namespaceSelector": map[string]interface{}{"matchLabels": map[string]interface{}{"team": "payments"}},
			})},
			req:  Request{Object: pod("web", privileged), NamespaceLabels: map[string]string{"team": "web"}},
			want: nil,
		},
		{
			name: "namespaceSelector on automatic kubernetes.io/metadata.name label",
			objs: []*unstructured.Unstructured{priv, noPriv("by-name", "", map[string]interface{}{
				"namespaceSelector": map[string]interface{}{"matchLabels": map[string]interface{}{"kubernetes.io/metadata.name": "web"}},
			})},
			req:  Request{Object: pod("web", privileged)},
			want: []Violation{deny("by-name", "root")}, wantDenied: 1,
		},
		{
			name: "enforcementAction warn is reported and does not deny",
			objs: []*unstructured.Unstructured{priv, noPriv("no-priv-warn", "warn", nil)},
			req:  Request{Object: pod("apps", privileged)},
			want: []Violation{{Kind: "TestPrivileged", Constraint: "no-priv-warn", EnforcementAction: "warn",
				Message: "privileged container not allowed: root"}},
			wantDenied: 0,
		},
		{
			name: "deny, warn and dryrun constraints all reported, sorted",
			objs: []*unstructured.Unstructured{priv, noPriv("c-dry", "dryrun", nil), noPriv("a-deny", "deny", nil), noPriv("b-warn", "warn", nil)},
			req:  Request{Object: pod("apps", privileged)},
			want: []Violation{
				deny("a-deny", "root"),
				{Kind: "TestPrivileged", Constraint: "b-warn", EnforcementAction: "warn", Message: "privileged container not allowed: root"},
				{Kind: "TestPrivileged", Constraint: "c-dry", EnforcementAction: "dryrun", Message: "privileged container not allowed: root"},
			},
			wantDenied: 1,
		},
		{
			name: "scoped enforcement action resolves to the webhook's action",
			objs: []*unstructured.Unstructured{priv, func() *unstructured.Unstructured {
				c := noPriv("scoped", "scoped", nil)
				c.Object["spec"].(map[string]interface{})["scopedEnforcementActions"] = []interface{}{
					map[string]interface{}{"action": "warn", "enforcementPoints": []interface{}{map[string]interface{}{"name": "validation.gatekeeper.sh"}}},
					map[string]interface{}{"action": "deny", "enforcementPoints": []interface{}{map[string]interface{}{"name": "audit.gatekeeper.sh"}}},
				}
				return c
			}()},
			req: Request{Object: pod("apps", privileged)},
			want: []Violation{{Kind: "TestPrivileged", Constraint: "scoped", EnforcementAction: "warn",
				Message: "privileged container not allowed: root"}},
		},
		{
			name: "UPDATE on ephemeralcontainers adding a privileged debugger is denied",
			objs: []*unstructured.Unstructured{priv, noPriv("no-priv", "", nil)},
			req: Request{Operation: "UPDATE", SubResource: "ephemeralcontainers",
				OldObject: pod("apps", nil), Object: pod("apps", withEphemeral(true))},
			want: []Violation{deny("no-priv", "debugger")}, wantDenied: 1,
		},
		{
			name: "legacy spec.targets[].rego (v0) works",
			objs: []*unstructured.Unstructured{mustYAML(t, legacyTemplate), constraint("TestLegacy", "legacy", map[string]interface{}{})},
			req:  Request{Object: pod("apps", hostNetwork)},
			want: []Violation{{Kind: "TestLegacy", Constraint: "legacy", EnforcementAction: "deny", Message: "hostNetwork (v0)"}}, wantDenied: 1,
		},
		{
			name: "legacy rego field with import future.keywords works",
			objs: []*unstructured.Unstructured{mustYAML(t, legacyFutureTemplate), constraint("TestLegacyFuture", "legacy-future", map[string]interface{}{})},
			req:  Request{Object: pod("apps", hostNetwork)},
			want: []Violation{{Kind: "TestLegacyFuture", Constraint: "legacy-future", EnforcementAction: "deny", Message: "hostNetwork (v0 + future.keywords)"}}, wantDenied: 1,
		},
		{
			name: "rego field and code both set: rego field wins",
			objs: []*unstructured.Unstructured{mustYAML(t, bothTemplate), constraint("TestBoth", "both", map[string]interface{}{})},
			req:  Request{Object: pod("apps", hostNetwork)},
			want: []Violation{{Kind: "TestBoth", Constraint: "both", EnforcementAction: "deny", Message: "from rego field"}}, wantDenied: 1,
		},
		{
			name: "template operations [CREATE] evaluated on CREATE",
			objs: []*unstructured.Unstructured{mustYAML(t, createOnlyTemplate), constraint("TestCreateOnly", "co", map[string]interface{}{})},
			req:  Request{Object: pod("apps", hostNetwork)},
			want: []Violation{{Kind: "TestCreateOnly", Constraint: "co", EnforcementAction: "deny", Message: "create only"}}, wantDenied: 1,
		},
		{
			name: "template operations [CREATE] skipped on UPDATE",
			objs: []*unstructured.Unstructured{mustYAML(t, createOnlyTemplate), constraint("TestCreateOnly", "co", map[string]interface{}{})},
			req:  Request{Operation: "UPDATE", Object: pod("apps", hostNetwork), OldObject: pod("apps", hostNetwork)},
			want: nil,
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(ctx, tc.objs)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			got, err := e.Review(ctx, tc.req)
			if err != nil {
				t.Fatalf("Review: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("violations:\n got  %#v\n want %#v", got, tc.want)
			}
			if n := len(Denied(got)); n != tc.wantDenied {
				t.Errorf("denied = %d, want %d", n, tc.wantDenied)
			}
		})
	}
}

func TestReviewInput(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, []*unstructured.Unstructured{
		mustYAML(t, probeTemplate),
		constraint("TestInputProbe", "probe", map[string]interface{}{
			"match":      map[string]interface{}{"kinds": podKinds},
			"parameters": map[string]interface{}{"tag": "p-42"},
		}),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	tests := []struct {
		name string
		req  Request
		want map[string]interface{}
	}{
		{
			name: "CREATE",
			req: Request{Object: pod("", nil), Namespace: "team-a", Username: "alice",
				NamespaceLabels: map[string]string{"team": "a"}},
			want: map[string]interface{}{
				"operation": "CREATE", "subResource": "<absent>", "kind": "Pod", "resource": "pods",
				"name": "p1", "namespace": "team-a", "objectNamespace": "team-a",
				"hasOldObject": false, "oldEphemeral": 0.0, "newEphemeral": 0.0,
				"username": "alice", "nsObjectName": "team-a", "nsTeam": "a", "tag": "p-42",
			},
		},
		{
			name: "UPDATE ephemeralcontainers",
			req: Request{Operation: "UPDATE", SubResource: "ephemeralcontainers",
				OldObject: pod("apps", nil), Object: pod("apps", withEphemeral(false))},
			want: map[string]interface{}{
				"operation": "UPDATE", "subResource": "ephemeralcontainers", "kind": "Pod", "resource": "pods",
				"name": "p1", "namespace": "apps", "objectNamespace": "apps",
				"hasOldObject": true, "oldEphemeral": 0.0, "newEphemeral": 1.0,
				"username": "<absent>", "nsObjectName": "apps", "nsTeam": "", "tag": "p-42",
			},
		},
		{
			name: "generated by expansion, parent UPDATE: no oldObject, userInfo or resource",
			req:  Request{Operation: "UPDATE", Generated: true, Object: pod("apps", nil)},
			want: map[string]interface{}{
				"operation": "UPDATE", "subResource": "<absent>", "kind": "Pod", "resource": "",
				"name": "p1", "namespace": "apps", "objectNamespace": "apps",
				"hasOldObject": false, "oldEphemeral": 0.0, "newEphemeral": 0.0,
				"username": "<absent>", "nsObjectName": "apps", "nsTeam": "", "tag": "p-42",
			},
		},
		{
			name: "DELETE (object taken from oldObject like Gatekeeper)",
			req:  Request{Operation: "DELETE", OldObject: pod("apps", withEphemeral(false))},
			want: map[string]interface{}{
				"operation": "DELETE", "subResource": "<absent>", "kind": "Pod", "resource": "pods",
				"name": "p1", "namespace": "apps", "objectNamespace": "apps",
				"hasOldObject": true, "oldEphemeral": 1.0, "newEphemeral": 1.0,
				"username": "<absent>", "nsObjectName": "apps", "nsTeam": "", "tag": "p-42",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.Review(ctx, tc.req)
			if err != nil {
				t.Fatalf("Review: %v", err)
			}
			if len(got) != 1 {
				t.Fatalf("want 1 probe violation, got %#v", got)
			}
			if got[0].Kind != "TestInputProbe" || got[0].Constraint != "probe" || got[0].EnforcementAction != "deny" {
				t.Errorf("unexpected violation header %#v", got[0])
			}
			var probe map[string]interface{}
			if err := json.Unmarshal([]byte(got[0].Message), &probe); err != nil {
				t.Fatalf("probe message %q: %v", got[0].Message, err)
			}
			if !reflect.DeepEqual(probe, tc.want) {
				t.Errorf("input probe:\n got  %v\n want %v", probe, tc.want)
			}
		})
	}

	// The caller's object must not be modified by defaulting.
	obj := pod("", nil)
	if _, err := e.Review(ctx, Request{Object: obj, Namespace: "x"}); err != nil {
		t.Fatalf("Review: %v", err)
	}
	if _, found := obj["metadata"].(map[string]interface{})["namespace"]; found {
		t.Errorf("Review mutated the caller's object: %v", obj["metadata"])
	}
}

func TestNewErrors(t *testing.T) {
	ctx := context.Background()
	priv := mustYAML(t, privilegedTemplate)
	tests := []struct {
		name    string
		objs    []*unstructured.Unstructured
		wantErr []string
	}{
		{
			name: "Rego compile error (undefined function)",
			objs: []*unstructured.Unstructured{templateWithRego(t, "broken", "Broken", `
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package broken

              violation contains {"msg": msg} if {
                msg := no_such_function(input.review.object)
              }
`)},
			wantErr: []string{`ConstraintTemplate "broken"`, "no_such_function"},
		},
		{
			name: "v1 syntax without version v1 is a parse error (defaults to v0)",
			objs: []*unstructured.Unstructured{templateWithRego(t, "noversion", "NoVersion", `
      code:
        - engine: Rego
          source:
            rego: |
              package noversion

              violation contains {"msg": "x"} if input.review.object.spec.hostNetwork
`)},
			wantErr: []string{`ConstraintTemplate "noversion"`, "rego_parse_error"},
		},
		{
			name: "v1 syntax in legacy rego field without import is a parse error",
			objs: []*unstructured.Unstructured{templateWithRego(t, "legacyv1", "LegacyV1", `
      rego: |
        package legacyv1

        violation contains {"msg": "x"} if input.review.object.spec.hostNetwork
`)},
			wantErr: []string{`ConstraintTemplate "legacyv1"`, "rego_parse_error"},
		},
		{
			name: "import rego.v1 in legacy rego field is rejected by the rewriter",
			objs: []*unstructured.Unstructured{templateWithRego(t, "importv1", "ImportV1", `
      rego: |
        package importv1

        import rego.v1

        violation contains {"msg": "x"} if input.review.object.spec.hostNetwork
`)},
			wantErr: []string{`ConstraintTemplate "importv1"`, `bad import: "rego.v1"`},
		},
		{
			name: "v0 syntax under version v1 is rejected",
			objs: []*unstructured.Unstructured{templateWithRego(t, "v0inv1", "V0InV1", `
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package v0inv1

              violation[{"msg": "x"}] {
                input.review.object.spec.hostNetwork
              }
`)},
			wantErr: []string{`ConstraintTemplate "v0inv1"`, "rego_parse_error"},
		},
		{
			name: "template without violation rule",
			objs: []*unstructured.Unstructured{templateWithRego(t, "noviolation", "NoViolation", `
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package noviolation

              deny contains "x" if true
`)},
			wantErr: []string{`ConstraintTemplate "noviolation"`, "violation"},
		},
		{
			name:    "constraint for unknown kind",
			objs:    []*unstructured.Unstructured{priv, constraint("Unknown", "u", map[string]interface{}{})},
			wantErr: []string{`Unknown "u"`},
		},
		{
			name:    "constraint with invalid enforcementAction",
			objs:    []*unstructured.Unstructured{priv, noPriv("bad-action", "block", nil)},
			wantErr: []string{`TestPrivileged "bad-action"`, "enforcementAction"},
		},
		{
			name: "constraint parameters violating the template schema",
			objs: []*unstructured.Unstructured{priv, constraint("TestPrivileged", "bad-params", map[string]interface{}{
				"parameters": map[string]interface{}{"reason": 42},
			})},
			wantErr: []string{`TestPrivileged "bad-params"`, "reason"},
		},
		{
			name: "invalid operations combination",
			objs: []*unstructured.Unstructured{templateWithRego(t, "badops", "BadOps", `
      operations: ["*", "CREATE"]
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package badops

              violation contains {"msg": "x"} if true
`)},
			wantErr: []string{`ConstraintTemplate "badops"`, "'*'"},
		},
		{
			name: "not a gatekeeper object",
			objs: []*unstructured.Unstructured{{Object: map[string]interface{}{
				"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]interface{}{"name": "cm"},
			}}},
			wantErr: []string{`ConfigMap "cm"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(ctx, tc.objs)
			if err == nil {
				t.Fatalf("New succeeded, want error containing %q", tc.wantErr)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestReviewRequestErrors(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tests := []struct {
		name    string
		req     Request
		wantErr string
	}{
		{name: "CREATE without object", req: Request{}, wantErr: "CREATE requires Object"},
		{name: "UPDATE without old object", req: Request{Operation: "UPDATE", Object: pod("a", nil)}, wantErr: "UPDATE requires"},
		{name: "unknown operation", req: Request{Operation: "PATCH", Object: pod("a", nil)}, wantErr: "unsupported operation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Review(ctx, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestReviewConcurrent(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, []*unstructured.Unstructured{mustYAML(t, privilegedTemplate), noPriv("no-priv", "", nil)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				req := Request{Object: pod("apps", nil)}
				want := 0
				if (i+j)%2 == 0 {
					req.Object = pod("apps", privileged)
					want = 1
				}
				got, err := e.Review(ctx, req)
				if err != nil {
					errs <- err.Error()
					return
				}
				if len(got) != want {
					errs <- "unexpected violations"
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func BenchmarkReview(b *testing.B) {
	ctx := context.Background()
	e, err := New(ctx, []*unstructured.Unstructured{mustYAML(b, privilegedTemplate), noPriv("no-priv", "", nil)})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	req := Request{Object: pod("apps", privileged)}
	b.ReportAllocs()
	for b.Loop() {
		vs, err := e.Review(ctx, req)
		if err != nil || len(vs) != 1 {
			b.Fatalf("Review = %v, %v", vs, err)
		}
	}
}
