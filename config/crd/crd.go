// Package crd embeds the generated CustomResourceDefinition, so that the operator and its
// render command validate and default a spec with exactly the schema the API server uses.
package crd

import _ "embed"

// PodSecurityConstraints is the generated CRD manifest (make manifests).
//
//go:embed bases/policy.podsecurity.dev_podsecurityconstraints.yaml
var PodSecurityConstraints []byte
