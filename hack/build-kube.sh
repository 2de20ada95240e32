#!/usr/bin/env bash
# Builds kube-apiserver and kubectl from the k8s.io/kubernetes Go module into bin/.
# k8s.io/kubernetes replaces its staging modules with local paths, which the module proxy
# does not carry; a wrapper module points each of them at the matching v0.X.Y release.
# The result is cached: a second run with the same version does nothing.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.2}"
BIN_DIR="${BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/bin}"
OUT="${BIN_DIR}/k8s/${KUBE_VERSION}"

if [[ -x "${OUT}/kube-apiserver" && -x "${OUT}/kubectl" ]]; then
  echo "kube-apiserver and kubectl ${KUBE_VERSION} already built in ${OUT}"
  exit 0
fi

staging_version="v0.${KUBE_VERSION#v1.}"
major=1
minor="$(echo "${KUBE_VERSION#v1.}" | cut -d. -f1)"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

echo "Building kube-apiserver and kubectl ${KUBE_VERSION} (staging ${staging_version}); this takes several minutes"
gomod="$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
if [[ -z "${gomod}" ]]; then
  echo "error: could not download k8s.io/kubernetes@${KUBE_VERSION} from the module proxy" >&2
  exit 1
fi

{
  echo "module psc.local/kubebuild"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//' | cut -d. -f1,2)"
  echo
  echo "require k8s.io/kubernetes ${KUBE_VERSION}"
  echo
  echo "replace ("
  # Every "k8s.io/<name> => ./staging/src/k8s.io/<name>" line becomes a versioned replace.
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/[a-z0-9-]*$#\t\1 => \1 '"${staging_version}"'#p' "${gomod}"
  echo ")"
} > "${work}/go.mod"

cat > "${work}/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO

cd "${work}"
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
GOFLAGS=-mod=mod go get "k8s.io/kubernetes/cmd/kube-apiserver@${KUBE_VERSION}" "k8s.io/kubernetes/cmd/kubectl@${KUBE_VERSION}"

ldflags="-s -w"
for var in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${var}.gitVersion=${KUBE_VERSION} -X ${var}.gitMajor=${major} -X ${var}.gitMinor=${minor}"
  ldflags+=" -X ${var}.gitTreeState=clean -X ${var}.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "${OUT}.tmp"
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${OUT}.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${OUT}.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
rm -rf "${OUT}"
mv "${OUT}.tmp" "${OUT}"
"${OUT}/kube-apiserver" --version
echo "Built into ${OUT}"
