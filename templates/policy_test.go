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

func TestWithoutFormatting(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`l.map(e, "psc/x: %s".format([e.kind, strings.quote(e.c.name)]))`, `l.map(e, "x")`},
		{`a.map(e, "psc/x: %s (y)".format([f(g(e)), "q)\")"])) + b.map(e, "psc/z".format([1]))`, `a.map(e, "x") + b.map(e, "x")`},
		{`["psc/x: literal"] + l.map(e, "psc/x: \"quoted\" %s".format([e]))`, `["psc/x: literal"] + l.map(e, "x")`},
		{`size(l) == 0`, `size(l) == 0`},
	} {
		if got := templates.WithoutFormatting(tc.in); got != tc.want {
			t.Errorf("withoutFormatting(%s)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestFoundOf(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`l.map(e, "psc/x: %s".format([e.kind]))`, `l.map(e, "x")`},
		// Flattened message lists become a list that is empty exactly when they are.
		{`l.map(e, e.ports.map(p, "psc/x: %d".format([p])))` +
			`.map(l, l.join("\u0000")).filter(s, s != "").join("\u0000").split("\u0000").filter(s, s != "") + ["psc/y"]`,
			`l.map(e, e.ports.map(p, "x")).filter(l, size(l) > 0).map(l, "x") + ["psc/y"]`},
	} {
		if got := templates.FoundOf(tc.in); got != tc.want {
			t.Errorf("foundOf(%s)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}
