// Command image builds psc-operator's container image without a container engine: an OCI
// image of two layers (a minimal base made here: passwd/group entries for the non-root user
// 65532, /tmp, CA-free since the operator only talks to the API server with the service
// account's CA; and the static manager binary), written as an OCI image layout. Every
// timestamp is SOURCE_DATE_EPOCH (or --created), so the same binary gives the same digest.
//
//	go run . --binary ../../bin/image/manager --out ../../bin/image/oci --tag v0.1.0
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	var o options
	var created string
	flag.StringVar(&o.Binary, "binary", "", "static manager binary to put at /manager (required)")
	flag.StringVar(&o.Out, "out", "", "directory of the OCI image layout to write; replaced if it exists (required)")
	flag.StringVar(&o.Repository, "repository", "ghcr.io/podsecurity/psc-operator", "image repository, recorded in the layout's ref name annotation")
	flag.StringVar(&o.Tag, "tag", "dev", "image tag, also org.opencontainers.image.version")
	flag.StringVar(&o.Revision, "revision", "", "source revision, org.opencontainers.image.revision")
	flag.StringVar(&o.Source, "source", "https://github.com/podsecurity/psc-operator", "org.opencontainers.image.source")
	flag.StringVar(&o.Arch, "arch", "amd64", "architecture the binary is built for")
	flag.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time, Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	flag.Parse()
	if err := run(o, created); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func run(o options, created string) error {
	if o.Binary == "" || o.Out == "" {
		return errors.New("--binary and --out are required")
	}
	if created != "" {
		sec, err := strconv.ParseInt(created, 10, 64)
		if err != nil {
			return fmt.Errorf("--created/SOURCE_DATE_EPOCH %q is not Unix seconds: %w", created, err)
		}
		o.Created = time.Unix(sec, 0).UTC()
	} else {
		o.Created = time.Unix(0, 0).UTC()
	}
	img, err := build(o)
	if err != nil {
		return err
	}
	digest, err := writeLayout(o.Out, img, o.Repository+":"+o.Tag)
	if err != nil {
		return err
	}
	fmt.Printf("%s:%s@%s\n", o.Repository, o.Tag, digest)
	return nil
}
