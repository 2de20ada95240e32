package validation

import (
	"context"
	"strings"
	"testing"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
)

func TestInvalidSpecsAreRejectedInProcess(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := v.DefaultAndValidate(context.Background(), tc.object(t))
			if len(errs) == 0 {
				t.Fatalf("accepted, want an error containing %q", tc.message)
			}
			if got := errs.ToAggregate().Error(); !strings.Contains(got, tc.message) {
				t.Errorf("error %q does not contain %q", got, tc.message)
			}
		})
	}
}

func TestValidSpecsAreAcceptedInProcess(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for name, obj := range validSpecs(t) {
		t.Run(name, func(t *testing.T) {
			if _, errs := v.DefaultAndValidate(context.Background(), obj); len(errs) > 0 {
				t.Errorf("rejected: %v", errs.ToAggregate())
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	psc, errs := v.DefaultAndValidate(context.Background(), object(t, "cluster", `{procMount: {enabled: true}}`))
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	s := psc.Spec
	if !s.MasterEnabled() || s.Enabled == nil || s.EnforcementAction != v1alpha1.EnforcementDeny ||
		len(s.ExcludedNamespaces) != 1 || s.ExcludedNamespaces[0] != "kube-system" || s.ProcMount.ProcMount != "Default" ||
		s.SetDefaults == nil || *s.SetDefaults {
		t.Errorf("defaults not applied: %+v", s)
	}
	if s.Workloads == nil || s.Workloads.Enabled == nil || !*s.Workloads.Enabled || !s.WorkloadsEnabled() {
		t.Errorf("workloads not on by default: %+v", s.Workloads)
	}
	psc, errs = v.DefaultAndValidate(context.Background(), object(t, "cluster", `{workloads: {enforcementAction: warn}}`))
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	if !psc.Spec.WorkloadsEnabled() || psc.Spec.Workloads.EnforcementAction != v1alpha1.EnforcementWarn {
		t.Errorf("a workloads block without enabled should default to enabled: %+v", psc.Spec.Workloads)
	}
}

func TestUnknownFieldsAreReported(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	_, errs := v.DefaultAndValidate(context.Background(), object(t, "cluster", `{privilegedContainer: {enabled: true}}`))
	if got := errs.ToAggregate(); got == nil || !strings.Contains(got.Error(), "spec.privilegedContainer") || !strings.Contains(got.Error(), "unknown field") {
		t.Errorf("error %v, want the unknown field named", got)
	}
}

func TestValidateTypedObject(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	obj := &v1alpha1.PodSecurityConstraints{}
	obj.Name = "cluster"
	obj.Spec.Capabilities = &v1alpha1.CapabilitiesFeature{AllowedCapabilities: []v1alpha1.Capability{"CAP_SYS_ADMIN"}}
	obj.Spec.Capabilities.Enabled = true
	if errs := v.Validate(context.Background(), obj); len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), "CAP_ prefix") {
		t.Errorf("errors %v, want the CAP_ prefix rule", errs)
	}
	obj.Spec.Capabilities.AllowedCapabilities = []v1alpha1.Capability{"SYS_ADMIN"}
	if errs := v.Validate(context.Background(), obj); len(errs) > 0 {
		t.Errorf("valid object rejected: %v", errs.ToAggregate())
	}
}

func TestWithValuesRewritesOnlyPlaceholders(t *testing.T) {
	for _, tc := range []struct{ got, want, out string }{
		{`spec.x[0]: Invalid value: "object": min must not be greater than max`, `spec.x[0]: Invalid value: min must`, `spec.x[0]: Invalid value: min must not be greater than max`},
		{`spec.p: Invalid value: "string": must not contain '..'`, `spec.p: Invalid value: "/var/..": must not`, `spec.p: Invalid value: "/var/..": must not contain '..'`},
		{`spec.p: Invalid value: "string": must not contain '..'`, `must not contain`, `spec.p: Invalid value: must not contain '..'`},
		{`spec.p: Invalid value: "/etc": must be absolute`, `spec.p: Invalid value: "/x": must be`, `spec.p: Invalid value: "/etc": must be absolute`},
		{`spec.e: Unsupported value: "block"`, `Unsupported value: "block"`, `spec.e: Unsupported value: "block"`},
	} {
		if got := withValues(tc.got, tc.want); got != tc.out {
			t.Errorf("withValues(%q, %q) = %q, want %q", tc.got, tc.want, got, tc.out)
		}
	}
}
