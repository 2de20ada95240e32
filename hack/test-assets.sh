#!/usr/bin/env bash
# Provides envtest's binaries in bin/k8s/<version>/: kube-apiserver and kubectl built from the
# Go module (cached), and etcd from Debian's etcd-server package, linked beside them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
KUBE_VERSION="${KUBE_VERSION:-v1.36.2}"
dir="${root}/bin/k8s/${KUBE_VERSION}"

if ! command -v etcd >/dev/null 2>&1; then
  echo "Installing etcd (Debian package etcd-server)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi

"${root}/hack/build-kube.sh" kube-apiserver kubectl
ln -sf "$(command -v etcd)" "${dir}/etcd"
echo "envtest assets ready: KUBEBUILDER_ASSETS=${dir}"
