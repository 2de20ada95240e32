package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// UID and GID of the user the image runs as (distroless' "nonroot").
	nonRootID = 65532
	// EntryPoint is where the manager binary is in the image.
	EntryPoint = "/manager"
)

type options struct {
	Binary, Out, Repository, Tag, Revision, Source, Arch string
	Created                                              time.Time
}

// file is one entry of a layer.
type file struct {
	Name string
	Mode int64
	Dir  bool
	Data []byte
}

// baseFiles are the base layer: the non-root user and a writable /tmp.
func baseFiles() []file {
	return []file{
		{Name: "etc/", Mode: 0o755, Dir: true},
		{Name: "etc/passwd", Mode: 0o644, Data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRootID, nonRootID))},
		{Name: "etc/group", Mode: 0o644, Data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonRootID))},
		{Name: "home/", Mode: 0o755, Dir: true},
		{Name: "home/nonroot/", Mode: 0o700, Dir: true},
		{Name: "tmp/", Mode: 0o1777, Dir: true},
	}
}

// layer packs files into a reproducible layer: fixed times and owners, in the given order.
func layer(files []file, created time.Time, uid int) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, ModTime: created, Uid: 0, Gid: 0, Format: tar.FormatPAX}
		if f.Name == "home/nonroot/" {
			h.Uid, h.Gid = uid, uid
		}
		if f.Dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.Name, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// Labels are the image's OCI annotations-as-labels.
func Labels(o options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "psc-operator",
		"org.opencontainers.image.description": "PodSecurityConstraints operator: PodSecurityPolicy-style pod security enforced through OPA Gatekeeper",
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.version":     o.Tag,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     o.Created.Format(time.RFC3339),
	}
	if o.Revision != "" {
		l["org.opencontainers.image.revision"] = o.Revision
	}
	return l
}

// build assembles the image.
func build(o options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("reading the manager binary: %w", err)
	}
	base, err := layer(baseFiles(), o.Created, nonRootID)
	if err != nil {
		return nil, fmt.Errorf("building the base layer: %w", err)
	}
	app, err := layer([]file{{Name: EntryPoint[1:], Mode: 0o755, Data: bin}}, o.Created, nonRootID)
	if err != nil {
		return nil, fmt.Errorf("building the manager layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range []v1.Layer{base, app} {
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{
			Created: v1.Time{Time: o.Created}, CreatedBy: "hack/image", Comment: "psc-operator",
		}})
		if err != nil {
			return nil, fmt.Errorf("adding a layer: %w", err)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", o.Arch
	cfg.Created = v1.Time{Time: o.Created}
	cfg.Config.Entrypoint = []string{EntryPoint}
	cfg.Config.Cmd = nil
	cfg.Config.User = fmt.Sprintf("%d:%d", nonRootID, nonRootID)
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/"}
	cfg.Config.Labels = Labels(o)
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("setting the config: %w", err)
	}
	return mutate.CreatedAt(img, v1.Time{Time: o.Created})
}

// writeLayout replaces dir with an OCI image layout holding img under ref.
func writeLayout(dir string, img v1.Image, ref string) (v1.Hash, error) {
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("creating the layout: %w", err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return v1.Hash{}, fmt.Errorf("writing the image: %w", err)
	}
	return img.Digest()
}
