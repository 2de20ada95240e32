#!/usr/bin/env bash
# Builds Kubernetes binaries from the k8s.io/kubernetes Go module into bin/k8s/<version>/.
#
# Usage: hack/build-kube.sh [BINARY...]
#   BINARY is kube-apiserver, kubectl or kube-controller-manager; default: all three.
#   hack/test-assets.sh (envtest) asks for kube-apiserver and kubectl only.
#
# k8s.io/kubernetes replaces its staging modules with local paths, which the module proxy
# does not carry; a wrapper module points each of them at the matching v0.X.Y release.
# The result is cached per binary: only the binaries missing from bin/k8s/<version>/ are built,
# and each is moved into place on its own, so binaries already there (possibly in use by a
# running cluster, or shared with other checkouts through a bin/k8s symlink) are never removed
# or rewritten. Concurrent runs for the same version wait for each other (flock).
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.2}"
BIN_DIR="${BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/bin}"
OUT="${BIN_DIR}/k8s/${KUBE_VERSION}"

all=(kube-apiserver kubectl kube-controller-manager)
wanted=("$@")
((${#wanted[@]} > 0)) || wanted=("${all[@]}")
for b in "${wanted[@]}"; do
  case "${b}" in
    kube-apiserver | kubectl | kube-controller-manager) ;;
    *)
      echo "error: unknown binary '${b}' (expected one of: ${all[*]})" >&2
      exit 2
      ;;
  esac
done

# missing_binaries: the wanted binaries that are not in OUT yet.
missing_binaries() {
  local b
  for b in "${wanted[@]}"; do
    [[ -x "${OUT}/${b}" ]] || echo "${b}"
  done
}

mapfile -t missing < <(missing_binaries)
if ((${#missing[@]} == 0)); then
  echo "${wanted[*]} ${KUBE_VERSION} already built in ${OUT}"
  exit 0
fi

mkdir -p "${BIN_DIR}/k8s"
# One build per version at a time; whoever waited re-checks what is still missing.
exec 9>"${BIN_DIR}/k8s/.build-${KUBE_VERSION}.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  mapfile -t missing < <(missing_binaries)
  if ((${#missing[@]} == 0)); then
    echo "${wanted[*]} ${KUBE_VERSION} already built in ${OUT}"
    exit 0
  fi
fi

staging_version="v0.${KUBE_VERSION#v1.}"
major=1
minor="$(echo "${KUBE_VERSION#v1.}" | cut -d. -f1)"

work="$(mktemp -d)"
staged="$(mktemp -d "${BIN_DIR}/k8s/.staging-${KUBE_VERSION}.XXXXXX")"
trap 'rm -rf "${work}" "${staged}"' EXIT

echo "Building ${missing[*]} ${KUBE_VERSION} (staging ${staging_version}); this takes several minutes"
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
} >"${work}/go.mod"

{
  echo "//go:build tools"
  echo
  echo "package tools"
  echo
  echo "import ("
  for b in "${missing[@]}"; do
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${b}"
  done
  echo ")"
} >"${work}/tools.go"

pkgs=()
for b in "${missing[@]}"; do
  pkgs+=("k8s.io/kubernetes/cmd/${b}@${KUBE_VERSION}")
done

cd "${work}"
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
GOFLAGS=-mod=mod go get "${pkgs[@]}"

ldflags="-s -w"
for var in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${var}.gitVersion=${KUBE_VERSION} -X ${var}.gitMajor=${major} -X ${var}.gitMinor=${minor}"
  ldflags+=" -X ${var}.gitTreeState=clean -X ${var}.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "${OUT}"
for b in "${missing[@]}"; do
  start=$(date +%s)
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${staged}/${b}" "k8s.io/kubernetes/cmd/${b}"
  # rename(2) within one file system: the binary appears complete or not at all.
  mv "${staged}/${b}" "${OUT}/${b}"
  echo "Built ${b} ${KUBE_VERSION} into ${OUT} in $(($(date +%s) - start))s"
done
