package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestRenderCommand(t *testing.T) {
	full, err := os.ReadFile("../../config/samples/policy_v1alpha1_podsecurityconstraints_full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("../../templates/testdata/golden/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout string // exact, when set
		wantStderr []string
	}{
		{name: "file", args: []string{"-f", "../../config/samples/policy_v1alpha1_podsecurityconstraints_full.yaml"}, wantStdout: string(golden)},
		{name: "stdin", args: []string{"-f", "-"}, stdin: string(full), wantStdout: string(golden)},
		{name: "master switch off renders nothing", args: []string{"-f", "-"},
			stdin: "apiVersion: policy.podsecurity.dev/v1alpha1\nkind: PodSecurityConstraints\nmetadata: {name: cluster}\nspec: {enabled: false, privilegedContainers: {enabled: true}}\n"},
		{name: "invalid spec", args: []string{"-f", "-"}, wantCode: 1,
			stdin:      "apiVersion: policy.podsecurity.dev/v1alpha1\nkind: PodSecurityConstraints\nmetadata: {name: cluster}\nspec:\n  capabilities: {enabled: true, allowedCapabilities: [CAP_SYS_ADMIN]}\n  hostNetworking: {enabled: true, hostPorts: [{min: 9, max: 1}]}\n",
			wantStderr: []string{"error: the PodSecurityConstraints is invalid:", "without the CAP_ prefix", "spec.hostNetworking.hostPorts[0]: Invalid value: min must not be greater than max"}},
		{name: "wrong name", args: []string{"-f", "-"}, wantCode: 1,
			stdin:      "apiVersion: policy.podsecurity.dev/v1alpha1\nkind: PodSecurityConstraints\nmetadata: {name: prod}\nspec: {}\n",
			wantStderr: []string{"must be named 'cluster'"}},
		{name: "unknown field", args: []string{"-f", "-"}, wantCode: 1,
			stdin:      "apiVersion: policy.podsecurity.dev/v1alpha1\nkind: PodSecurityConstraints\nmetadata: {name: cluster}\nspec: {privilegedContainer: {enabled: true}}\n",
			wantStderr: []string{"spec.privilegedContainer", "unknown field"}},
		{name: "not our kind", args: []string{"-f", "-"}, wantCode: 1, stdin: "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
			wantStderr: []string{"must be a policy.podsecurity.dev/v1alpha1 PodSecurityConstraints"}},
		{name: "missing file", args: []string{"-f", "nope.yaml"}, wantCode: 1, wantStderr: []string{"reading nope.yaml"}},
		{name: "usage", args: nil, wantCode: 2, wantStderr: []string{"Usage: psc render -f FILE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runRender(context.Background(), tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			if tc.wantCode == 0 && stdout.String() != tc.wantStdout {
				t.Errorf("stdout differs from the expected output (%d vs %d bytes)", stdout.Len(), len(tc.wantStdout))
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}
