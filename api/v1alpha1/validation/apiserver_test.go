package validation

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// TestAPIServerValidation installs the generated CRD into a real kube-apiserver and checks
// that it rejects every invalid case with its message and accepts the valid ones.
func TestAPIServerValidation(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which provides kube-apiserver and etcd")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	minor, err := strconv.Atoi(strings.TrimSuffix(info.Minor, "+"))
	if err != nil {
		t.Fatalf("server minor version %q: %v", info.Minor, err)
	}
	t.Logf("kube-apiserver %s", info.GitVersion)

	t.Run("invalid", func(t *testing.T) {
		for _, tc := range invalidCases {
			t.Run(tc.name, func(t *testing.T) {
				obj := &unstructured.Unstructured{Object: tc.object(t)}
				err := c.Create(ctx, obj)
				if err == nil {
					_ = c.Delete(ctx, obj)
					t.Fatalf("the API server accepted it, want an error containing %q", tc.message)
				}
				got := err.Error()
				if minor < typedPlaceholderUntil {
					got = withValues(got, tc.message)
				}
				if !strings.Contains(got, tc.message) {
					t.Errorf("error %q does not contain %q", err.Error(), tc.message)
				}
			})
		}
	})
	t.Run("valid", func(t *testing.T) {
		for name, o := range validSpecs(t) {
			t.Run(name, func(t *testing.T) {
				obj := &unstructured.Unstructured{Object: o}
				if err := c.Create(ctx, obj); err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if err := c.Delete(ctx, obj); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

// typedPlaceholderUntil is the first Kubernetes minor version whose CEL validation errors show
// the rejected value; older API servers show the schema type instead: `Invalid value: "object":
// msg` where newer ones write `Invalid value: msg` (objects are not printed) and `Invalid value:
// "string": msg` where newer ones write `Invalid value: "/var/..": msg`.
const typedPlaceholderUntil = 31

var typedPlaceholder = regexp.MustCompile(`Invalid value: "(object|string|array|integer|number|boolean)": `)
var quotedValue = regexp.MustCompile(`Invalid value: ("(?:[^"\\]|\\.)*"): `)

// withValues rewrites an older API server's message into the newer format the table is written
// in, and nothing else: a type placeholder becomes the value the expected message shows (or
// nothing, for an object). Field path, reason and text must still match exactly.
func withValues(got, want string) string {
	value := ""
	if m := quotedValue.FindStringSubmatch(want); m != nil {
		value = m[1] + ": "
	}
	return typedPlaceholder.ReplaceAllStringFunc(got, func(p string) string {
		if strings.Contains(p, `"object"`) || value == "" {
			return "Invalid value: "
		}
		return "Invalid value: " + value
	})
}
