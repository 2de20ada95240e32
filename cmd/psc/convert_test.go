package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestConvertPSPCommand(t *testing.T) {
	root, err := os.ReadFile("../../pspconvert/testdata/restrict-root.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{name: "file", args: []string{"-f", "../../pspconvert/testdata/restrict-root.yaml"},
			wantStdout: []string{"kind: PodSecurityConstraints", "rule: MustRunAsNonRoot", "# Converted from PodSecurityPolicy restrict-root"}},
		{name: "stdin", args: []string{"-f", "-"}, stdin: string(root), wantStdout: []string{"rule: MustRunAsNonRoot"}},
		{name: "not a PSP", args: []string{"-f", "-"}, stdin: "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", wantCode: 1,
			wantStderr: []string{`error: document 1 is a "v1" "Pod", want a policy/v1beta1 PodSecurityPolicy`}},
		{name: "unreadable file", args: []string{"-f", "does-not-exist.yaml"}, wantCode: 1, wantStderr: []string{"error: reading does-not-exist.yaml"}},
		{name: "no file", args: nil, wantCode: 2, wantStderr: []string{"Usage: psc convert-psp -f FILE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runConvertPSP(context.Background(), tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, tc.wantCode, stderr.String())
			}
			for _, want := range tc.wantStdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if tc.wantCode != 0 && stdout.Len() > 0 {
				t.Errorf("failed conversion wrote to stdout: %s", stdout.String())
			}
		})
	}
}
