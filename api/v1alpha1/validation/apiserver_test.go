package validation

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

	t.Run("invalid", func(t *testing.T) {
		for _, tc := range invalidCases {
			t.Run(tc.name, func(t *testing.T) {
				obj := &unstructured.Unstructured{Object: tc.object(t)}
				err := c.Create(ctx, obj)
				if err == nil {
					_ = c.Delete(ctx, obj)
					t.Fatalf("the API server accepted it, want an error containing %q", tc.message)
				}
				if !strings.Contains(err.Error(), tc.message) {
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
