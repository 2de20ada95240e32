package main

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestImage inspects the image `make image` wrote (PSC_IMAGE_LAYOUT, with the binary it was
// built from in PSC_IMAGE_BINARY): its config, its files, and that the manager it carries
// runs; and that building it again from the same binary gives the same digest.
func TestImage(t *testing.T) {
	dir, binary := os.Getenv("PSC_IMAGE_LAYOUT"), os.Getenv("PSC_IMAGE_BINARY")
	if dir == "" || binary == "" {
		t.Fatal("PSC_IMAGE_LAYOUT and PSC_IMAGE_BINARY are not set: run with make test-image")
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("the layout holds %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	ref := desc.Annotations["org.opencontainers.image.ref.name"]
	if !strings.HasPrefix(ref, "ghcr.io/podsecurity/psc-operator:") {
		t.Errorf("ref name %q", ref)
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want an OCI manifest", desc.MediaType)
	}
	img, err := p.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if strings.Join(c.Entrypoint, " ") != "/manager" || len(c.Cmd) != 0 {
		t.Errorf("entrypoint %v cmd %v, want [/manager] and no cmd", c.Entrypoint, c.Cmd)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want the numeric non-root 65532:65532", c.User)
	}
	if cfg.OS != "linux" || cfg.Architecture == "" {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version",
		"org.opencontainers.image.revision", "org.opencontainers.image.created", "org.opencontainers.image.licenses"} {
		if c.Labels[l] == "" {
			t.Errorf("label %s missing", l)
		}
	}
	if v := c.Labels["org.opencontainers.image.version"]; !strings.HasSuffix(ref, ":"+v) {
		t.Errorf("version label %q does not match the tag of %q", v, ref)
	}

	files := extract(t, img)
	for name, want := range map[string]struct {
		mode int64
		uid  int
	}{"manager": {0o755, 0}, "tmp": {0o1777, 0}, "etc/passwd": {0o644, 0}, "home/nonroot": {0o700, 65532}} {
		h, ok := files[name]
		if !ok {
			t.Errorf("%s missing from the image", name)
			continue
		}
		if h.Mode&0o7777 != want.mode || h.Uid != want.uid {
			t.Errorf("%s mode %o owner %d, want %o and %d", name, h.Mode&0o7777, h.Uid, want.mode, want.uid)
		}
		if !h.ModTime.Equal(cfg.Created.Time) {
			t.Errorf("%s time %s, want the image's creation time %s", name, h.ModTime, cfg.Created.Time)
		}
	}
	if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", files["etc/passwd"].data)
	}

	// The binary in the image is the one given, and it runs.
	want, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	got := files["manager"].data
	if string(got) != string(want) {
		t.Fatalf("/manager (%d bytes) differs from %s (%d bytes)", len(got), binary, len(want))
	}
	exe := filepath.Join(t.TempDir(), "manager")
	if err := os.WriteFile(exe, got, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("/manager --help: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "-leader-elect") {
		t.Errorf("/manager --help does not list --leader-elect:\n%s", out)
	}
	// Static: the image has no dynamic loader or libc to run it with.
	ef, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			t.Errorf("/manager is dynamically linked (program header %s)", prog.Type)
		}
	}

	// Reproducible: the same inputs give the same digest.
	again, err := build(options{Binary: binary, Repository: "ghcr.io/podsecurity/psc-operator", Tag: c.Labels["org.opencontainers.image.version"],
		Revision: c.Labels["org.opencontainers.image.revision"], Source: c.Labels["org.opencontainers.image.source"], Arch: cfg.Architecture,
		Created: cfg.Created.Time.UTC()})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, err := again.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("rebuilding gave digest %s, the layout has %s", d2, d1)
	}
}

type entry struct {
	*tar.Header
	data []byte
}

// extract reads the image's flattened filesystem.
func extract(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]entry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = entry{Header: h, data: data}
	}
	return out
}

func TestRunRejectsBadInput(t *testing.T) {
	if err := run(options{}, ""); err == nil {
		t.Error("no binary and no output accepted")
	}
	if err := run(options{Binary: "x", Out: t.TempDir()}, "yesterday"); err == nil {
		t.Error("a non-numeric creation time accepted")
	}
}
