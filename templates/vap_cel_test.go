package templates_test

import (
	"encoding/json"
	"testing"

	templatesv1 "github.com/open-policy-agent/frameworks/constraint/pkg/apis/templates/v1"
	cttemplates "github.com/open-policy-agent/frameworks/constraint/pkg/core/templates"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/drivers/k8scel/transform"
	admissionregistrationv1beta1 "k8s.io/api/admissionregistration/v1beta1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/version"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/podsecurity/psc-operator/templates"
)

// oldestKubernetes is the oldest Kubernetes the operator supports (README, Supported versions).
var oldestKubernetes = version.MajorMinor(1, 30)

// TestCELCompilesOnOldestAPIServer compiles every template's CEL code the way the API server
// compiles the ValidatingAdmissionPolicy Gatekeeper generates from it
// (spec.validatingAdmissionPolicy.enabled): Gatekeeper's transform builds the policy (its own
// variables and match conditions, then ours), and each expression is compiled in
// k8s.io/apiserver's CEL environment at compatibility version 1.30, with the variables,
// params and authorizer a policy has. A function from a newer CEL library (Kubernetes 1.34's
// list extensions, for instance) fails here: on a 1.30 API server the policy could not be
// created, or would deny every pod with a compilation error.
func TestCELCompilesOnOldestAPIServer(t *testing.T) {
	for _, ver := range []*version.Version{oldestKubernetes, environment.DefaultCompatibilityVersion()} {
		envSet := environment.MustBaseEnvSet(ver)
		t.Run(ver.String(), func(t *testing.T) {
			policy := generatedPolicy(t)
			compileLikeAPIServer(t, envSet, policy)
		})
	}
}

// TestCELCompileCheckFails makes sure the check above can fail: an expression using a list
// function of Kubernetes 1.34 does not compile at 1.30 and does at 1.34.
func TestCELCompileCheckFails(t *testing.T) {
	expr := `[3, 1, 2].sortBy(x, x).distinct() == [1, 2, 3]`
	compile := func(ver *version.Version) error {
		c, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(ver))
		if err != nil {
			t.Fatal(err)
		}
		res := c.CompileCELExpression(&validating.ValidationCondition{Expression: expr}, plugincel.OptionalVariableDeclarations{}, environment.NewExpressions)
		if res.Error != nil {
			return res.Error
		}
		return nil
	}
	if err := compile(oldestKubernetes); err == nil {
		t.Errorf("%s compiled at %s; want an error (list extensions arrived in 1.34)", expr, oldestKubernetes)
	}
	if err := compile(version.MajorMinor(1, 34)); err != nil {
		t.Errorf("%s did not compile at 1.34: %v", expr, err)
	}
}

// generatedPolicy is the ValidatingAdmissionPolicy Gatekeeper v3.23 generates from the
// policy template as Render gives it with spec.validatingAdmissionPolicy.enabled, with namespace
// exclusions as --sync-vap-enforcement-scope adds them.
func generatedPolicy(t *testing.T) *admissionregistrationv1beta1.ValidatingAdmissionPolicy {
	t.Helper()
	u, ok := renderSpec(t, `{validatingAdmissionPolicy: {enabled: true}, hostNamespaces: {enabled: true}}`).Find(templates.RoleTemplate, "hostNamespaces")
	if !ok {
		t.Fatal("no policy template rendered")
	}
	ct := versionless(t, u)
	policy, err := transform.TemplateToPolicyDefinitionWithWebhookConfig(ct, nil, []string{"kube-*"}, []string{"gatekeeper-system"})
	if err != nil {
		t.Fatalf("Gatekeeper's transform: %v", err)
	}
	if len(policy.Spec.Validations) != len(templates.Features()) || len(policy.Spec.Variables) < 3 || len(policy.Spec.MatchConditions) < 4 {
		t.Fatalf("unexpected policy shape: %d validations, %d variables, %d match conditions",
			len(policy.Spec.Validations), len(policy.Spec.Variables), len(policy.Spec.MatchConditions))
	}
	return policy
}

func versionless(t *testing.T, u *unstructured.Unstructured) *cttemplates.ConstraintTemplate {
	t.Helper()
	b, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	v1 := &templatesv1.ConstraintTemplate{}
	if err := json.Unmarshal(b, v1); err != nil {
		t.Fatal(err)
	}
	ct, err := v1.ToVersionless()
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// compileLikeAPIServer compiles the policy's variables (in order, each seeing the ones
// before), match conditions, validations and message expressions as the API server's
// validating admission policy plugin does, in the environment for new expressions.
func compileLikeAPIServer(t *testing.T, envSet *environment.EnvSet, policy *admissionregistrationv1beta1.ValidatingAdmissionPolicy) {
	t.Helper()
	c, err := plugincel.NewCompositedCompiler(envSet)
	if err != nil {
		t.Fatal(err)
	}
	withAuthz := plugincel.OptionalVariableDeclarations{HasParams: true, HasAuthorizer: true}
	noAuthz := plugincel.OptionalVariableDeclarations{HasParams: true}
	check := func(what string, res plugincel.CompilationResult) {
		t.Helper()
		if res.Error != nil {
			t.Errorf("%s: %v", what, res.Error)
		}
	}
	for _, v := range policy.Spec.Variables {
		check("variable "+v.Name, c.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, withAuthz, environment.NewExpressions))
	}
	for i := range policy.Spec.MatchConditions {
		mc := policy.Spec.MatchConditions[i]
		check("matchCondition "+mc.Name, c.CompileCELExpression(&matchconditions.MatchCondition{Name: mc.Name, Expression: mc.Expression}, withAuthz, environment.NewExpressions))
	}
	for _, v := range policy.Spec.Validations {
		check("validation", c.CompileCELExpression(&validating.ValidationCondition{Expression: v.Expression}, withAuthz, environment.NewExpressions))
		if v.MessageExpression != "" {
			check("messageExpression", c.CompileCELExpression(&validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}, noAuthz, environment.NewExpressions))
		}
	}
}
