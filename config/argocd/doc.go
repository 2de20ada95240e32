// Package argocd holds the Argo CD custom health check for PodSecurityConstraints: health.lua,
// the argocd-cm snippet that installs it (argocd-cm-patch.yaml) and the tests that run it the
// way Argo CD does.
package argocd

import _ "embed"

// ConfigMapKey is the argocd-cm data key Argo CD reads the health check from.
const ConfigMapKey = "resource.customizations.health.policy.podsecurity.dev_PodSecurityConstraints"

// HealthLua is the health check script (health.lua).
//
//go:embed health.lua
var HealthLua string
