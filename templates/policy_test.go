package templates_test

import (
	"testing"

	"github.com/podsecurity/psc-operator/templates"
)

func TestFeatureOfMessage(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{`psc/hostNamespaces: pod spec.hostPID is true (shares the host's PID namespace), allowed: false`, "hostNamespaces"},
		{`psc/capabilities: container "app" adds SYS_ADMIN, allowed: []; psc/capabilities: container "b" adds NET_RAW, allowed: []`, "capabilities"},
		// A workload's generated pod, judged through an ExpansionTemplate (audit and webhook).
		{`[Implied by psc-deployment] psc/privilegedContainers: container "app" is privileged, allowed: false`, "privilegedContainers"},
		{`[Implied by psc-cronjob] [Implied by psc-job] psc/seccomp: pod has no seccomp profile`, "seccomp"},
		{`[Implied by psc-deployment psc/seccomp: unterminated`, ""},
		{`psc/noSuchFeature: x`, ""},
		{`psc/hostNamespaces without a colon`, ""},
		{`some other policy: psc/hostNamespaces: x`, ""},
		{``, ""},
	} {
		if got := templates.FeatureOfMessage(tc.msg); got != tc.want {
			t.Errorf("FeatureOfMessage(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}
