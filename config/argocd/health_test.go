package argocd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

const (
	gatekeeperMissing = "Gatekeeper is not installed: the CRD constrainttemplates.templates.gatekeeper.sh does not exist. " +
		"Install OPA Gatekeeper (v3.x); the operator applies the policies as soon as it appears."
	admissionNotEnforced = "Pods are admitted unchecked: a probe pod violating the admission probe policy in namespace psc-probe was admitted at 2026-06-01T10:10:00Z " +
		"(passed every admission webhook and was stopped only by the ResourceQuota psc-admission-probe; 2 failed probes in a row). " +
		"Gatekeeper's webhook is not judging pods: Gatekeeper is down or not ready and its webhook fails open (failurePolicy Ignore), " +
		"its ValidatingWebhookConfiguration is missing, or Gatekeeper exempts namespace psc-probe. " +
		"None of the 2 enabled features is enforced at admission; Gatekeeper's audit still reports violations once it runs."
	admissionWebhookFailing = "Calls to Gatekeeper's webhook fail and its failurePolicy is Fail: the API server rejects pods without judging them " +
		"(at 2026-06-01T10:10:00Z, 2 failed probes in a row: Internal error occurred: failed calling webhook \"validation.gatekeeper.sh\": " +
		"failed to call webhook: Post \"https://gatekeeper-webhook-service.gatekeeper-system.svc:443/v1/admit?timeout=3s\": dial tcp 10.96.10.20:443: connect: connection refused)."
	enforcedByAPIServerOnly = "Only the API server enforces now: a probe pod violating the admission probe policy in namespace psc-probe was admitted at 2026-11-30T08:56:29Z " +
		"(passed every admission webhook and was stopped only by the ResourceQuota psc-admission-probe; 2 failed probes in a row). " +
		"Gatekeeper's webhook is not judging pods: Gatekeeper is down or not ready and its webhook fails open (failurePolicy Ignore), " +
		"its ValidatingWebhookConfiguration is missing, or Gatekeeper exempts namespace psc-probe. " +
		"The API server still enforces 1 of the 2 enabled features itself (ValidatingAdmissionPolicy): pods violating them are denied. " +
		"Until Gatekeeper is back, workloads are not judged at apply time, pods are not completed by defaults, and audit results are not refreshed. " +
		"Not enforced at all now: privilegedContainers."
	vapGenerationFailed = "1 of 1 enabled features failed: hostNamespaces: Gatekeeper could not generate the API server's policy for the feature: " +
		"ValidatingAdmissionPolicy gatekeeper-pscpodsecurity: ValidatingAdmissionPolicy is not generated: ValidatingAdmissionPolicy API is not enabled"
	invalidSpec = "The spec is invalid and was not applied: spec.hostNetworking.hostPorts[0]: Invalid value: 9000: min must not exceed max"
)

var healthCases = []struct {
	fixture string
	status  string
	message string
}{
	{"healthy.yaml", "Healthy", "All 2 enabled features are enforced."},
	{"healthy-workloads-unchecked.yaml", "Healthy", "All 2 enabled features are enforced. Workloads are not checked at apply time: " +
		"Gatekeeper does not serve ExpansionTemplates (the CRD expansiontemplate.expansion.gatekeeper.sh does not exist; Gatekeeper before v3.10 or installed without it): " +
		"workloads are not checked at apply time. Pods are still checked when they are created."},
	{"healthy-workloads-disabled.yaml", "Healthy", "All 2 enabled features are enforced."},
	{"progressing-new-generation.yaml", "Progressing", "Waiting for the operator to observe generation 4"},
	{"progressing-waiting-for-gatekeeper.yaml", "Progressing", "Waiting for Gatekeeper to enforce 1 of 3 enabled features: readOnlyRootFilesystem"},
	{"gatekeeper-not-installed.yaml", "Progressing", gatekeeperMissing},
	{"degraded-feature-error.yaml", "Degraded", "1 of 2 enabled features failed: seccomp: Gatekeeper reported template errors: rego_parse_error: unexpected eof token"},
	{"stalled-invalid-spec.yaml", "Degraded", invalidSpec},
	{"master-switch-off.yaml", "Healthy", "The master switch spec.enabled is off: no policies are generated."},
	{"no-status.yaml", "Progressing", "Waiting for the operator to observe generation 1"},
	{"degraded-prune-failed-new-generation.yaml", "Degraded", "Pruning stale objects failed: pscpodsecurity.psc-warn: the server is currently unable to handle the request"},
	{"stalled-old-generation.yaml", "Progressing", "Waiting for the operator to observe generation 6"},
	{"ready-unknown.yaml", "Progressing", "The operator could not determine readiness."},
	{"admission-not-enforced.yaml", "Degraded", admissionNotEnforced},
	{"admission-webhook-failing.yaml", "Degraded", admissionWebhookFailing},
	{"admission-unverified.yaml", "Degraded", "The admission probe cannot run (namespaces \"psc-probe\" not found), so whether admission rejects violations is not verified."},
	{"verifying-admission.yaml", "Progressing", "Gatekeeper enforces all 2 enabled features; verifying with a probe pod that admission denies violations."},
	{"enforced-by-apiserver-only.yaml", "Degraded", enforcedByAPIServerOnly},
	{"healthy-apiserver-enforced.yaml", "Healthy", "All 1 enabled features are enforced; a probe pod verifies that admission denies violations."},
	{"progressing-apiserver-pending.yaml", "Progressing", "Waiting for Gatekeeper to enforce 1 of 1 enabled features: hostNamespaces"},
	{"degraded-vap-generation-failed.yaml", "Degraded", vapGenerationFailed},
}

func TestHealth(t *testing.T) {
	for _, tc := range healthCases {
		t.Run(strings.TrimSuffix(tc.fixture, ".yaml"), func(t *testing.T) {
			obj := loadFixture(t, tc.fixture)
			status, message := runHealth(t, obj)
			if status != tc.status || message != tc.message {
				t.Errorf("health = %s %q\nwant     %s %q", status, message, tc.status, tc.message)
			}
		})
	}
}

// TestConditionPrecedence pins the order of the checks with statuses the operator does not
// write today (it copies Ready's reason and message into Stalled and Reconciling, and moves
// status.observedGeneration together with Ready=True), so that a change in how the status is
// written cannot silently flip the health.
func TestConditionPrecedence(t *testing.T) {
	cond := func(typ, status, reason, message string, generation int64) map[string]any {
		return map[string]any{"type": typ, "status": status, "reason": reason, "message": message, "observedGeneration": generation}
	}
	readyTrue := cond("Ready", "True", "Enforced", "All 2 enabled features are enforced.", 3)
	for _, tc := range []struct {
		name               string
		observedGeneration int64
		conditions         []any
		status, message    string
	}{
		{"Stalled wins over Ready=True", 3,
			[]any{readyTrue, cond("Stalled", "True", "RenderFailed", "rendering failed", 3)},
			"Degraded", "rendering failed"},
		{"Reconciling wins over Ready=True", 3,
			[]any{readyTrue, cond("Reconciling", "True", "Progressing", "still applying", 3)},
			"Progressing", "still applying"},
		{"Ready=True needs status.observedGeneration", 2,
			[]any{readyTrue},
			"Progressing", "Waiting for the operator to observe generation 3"},
		{"Stalled of an older generation is ignored", 2,
			[]any{cond("Ready", "False", "Progressing", "Waiting for Gatekeeper", 3), cond("Stalled", "True", "InvalidSpec", "invalid", 2)},
			"Progressing", "Waiting for Gatekeeper"},
		{"empty message falls back to the reason", 3,
			[]any{cond("Ready", "False", "StatusReadFailed", "", 3)},
			"Degraded", "StatusReadFailed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := loadFixture(t, "healthy.yaml")
			status := obj["status"].(map[string]any)
			status["observedGeneration"] = tc.observedGeneration
			status["conditions"] = tc.conditions
			gotStatus, gotMessage := runHealth(t, obj)
			if gotStatus != tc.status || gotMessage != tc.message {
				t.Errorf("health = %s %q\nwant     %s %q", gotStatus, gotMessage, tc.status, tc.message)
			}
		})
	}
}

// TestEveryFixtureHasACase keeps testdata and healthCases in step.
func TestEveryFixtureHasACase(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var fixtures, cased []string
	for _, f := range files {
		fixtures = append(fixtures, filepath.Base(f))
	}
	for _, tc := range healthCases {
		cased = append(cased, tc.fixture)
	}
	slices.Sort(fixtures)
	slices.Sort(cased)
	if !slices.Equal(fixtures, cased) {
		t.Errorf("fixtures in testdata: %v\ncases in healthCases: %v", fixtures, cased)
	}
}

// TestConfigMapPatchEmbedsHealthLua fails when argocd-cm-patch.yaml and health.lua drift apart.
func TestConfigMapPatchEmbedsHealthLua(t *testing.T) {
	data, err := os.ReadFile("argocd-cm-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-cm" {
		t.Errorf("patch targets %s %s %q, want v1 ConfigMap \"argocd-cm\"", cm.APIVersion, cm.Kind, cm.Metadata.Name)
	}
	script, ok := cm.Data[ConfigMapKey]
	if !ok {
		t.Fatalf("argocd-cm-patch.yaml has no data key %q; keys: %v", ConfigMapKey, keys(cm.Data))
	}
	if script != HealthLua {
		t.Errorf("the script in argocd-cm-patch.yaml differs from health.lua; copy health.lua into it again, indented by 4 spaces")
	}
}

// TestLuaStateIsRestricted guards the harness: like Argo CD for scripts from argocd-cm, it must
// not offer the string library, so a script that needs it fails here and not in Argo CD.
func TestLuaStateIsRestricted(t *testing.T) {
	l := newArgoLuaState(t)
	if err := l.DoString(`return string, tostring(12), table.concat({"a", "b"})`); err != nil {
		t.Fatal(err)
	}
	if got := l.Get(-3); got != lua.LNil {
		t.Errorf("string library is available (%s); Argo CD does not offer it", got.Type())
	}
	if got := l.Get(-2).String(); got != "12" {
		t.Errorf("tostring(12) = %q, want \"12\"", got)
	}
	if got := l.Get(-1).String(); got != "ab" {
		t.Errorf("table.concat = %q, want \"ab\"", got)
	}
}

// newArgoLuaState builds a Lua state the way Argo CD's util/lua runs health scripts configured
// in argocd-cm (useOpenLibs unset): only the package, base and table libraries (plus a
// restricted os library, left out here because the script does not use it), and a one-second
// deadline.
func newArgoLuaState(t *testing.T) *lua.LState {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	t.Cleanup(l.Close)
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatalf("opening Lua library %s: %v", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	t.Cleanup(cancel)
	l.SetContext(ctx)
	return l
}

// runHealth runs health.lua with the global obj set to the object and returns the status and
// message of the table it returns.
func runHealth(t *testing.T, obj map[string]any) (status, message string) {
	t.Helper()
	l := newArgoLuaState(t)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(HealthLua); err != nil {
		t.Fatalf("running health.lua: %v", err)
	}
	hs, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %s, want a table", l.Get(-1).Type())
	}
	for field, dst := range map[string]*string{"status": &status, "message": &message} {
		v, ok := hs.RawGetString(field).(lua.LString)
		if !ok {
			t.Fatalf("hs.%s is %s, want a string", field, hs.RawGetString(field).Type())
		}
		*dst = string(v)
	}
	return status, message
}

// loadFixture reads a testdata YAML file into the generic form the API server's JSON decodes to.
func loadFixture(t *testing.T, name string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(data, &obj); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if obj["kind"] != "PodSecurityConstraints" || obj["apiVersion"] != "policy.podsecurity.dev/v1alpha1" {
		t.Fatalf("%s: not a policy.podsecurity.dev/v1alpha1 PodSecurityConstraints: %v %v", name, obj["apiVersion"], obj["kind"])
	}
	return obj
}

// toLua converts decoded JSON (maps, slices, strings, numbers, booleans, nil) into Lua values
// the way Argo CD does: objects become tables with string keys, arrays 1-based sequences.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		tbl := l.CreateTable(len(v), 0)
		for _, item := range v {
			tbl.Append(toLua(l, item))
		}
		return tbl
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetString(key, toLua(l, item))
		}
		return tbl
	}
	panic(fmt.Sprintf("toLua: unsupported type %T", v))
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
