package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no command", wantCode: 2, wantStderr: "Usage: psc COMMAND"},
		{name: "help", args: []string{"--help"}, wantStdout: "render -f FILE"},
		{name: "unknown command", args: []string{"apply"}, wantCode: 2, wantStderr: `unknown command "apply"`},
		{name: "render dispatched", args: []string{"render"}, wantCode: 2, wantStderr: "Usage: psc render -f FILE"},
		{name: "convert-psp dispatched", args: []string{"convert-psp"}, wantCode: 2, wantStderr: "Usage: psc convert-psp -f FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d (stderr: %s)", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}
