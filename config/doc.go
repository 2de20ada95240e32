// Package config holds the kustomize manifests; its tests check the security properties of
// the RBAC rules and the manager Deployment.
package config
