#!/usr/bin/env bash
# Builds Gatekeeper's manager and gator from the Go module into bin/ and copies its CRDs.
# Cached: a second run with the same version does nothing.
set -euo pipefail

GATEKEEPER_VERSION="${GATEKEEPER_VERSION:-v3.23.1}"
BIN_DIR="${BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/bin}"
OUT="${BIN_DIR}/gatekeeper/${GATEKEEPER_VERSION}"
module="github.com/open-policy-agent/gatekeeper/v3"

if [[ -x "${OUT}/manager" && -x "${OUT}/gator" && -d "${OUT}/crds" ]]; then
  echo "Gatekeeper ${GATEKEEPER_VERSION} already built in ${OUT}"
  exit 0
fi

echo "Building Gatekeeper ${GATEKEEPER_VERSION} and gator; this takes several minutes"
dir="$(go mod download -json "${module}@${GATEKEEPER_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "${dir}" ]]; then
  echo "error: could not download ${module}@${GATEKEEPER_VERSION} from the module proxy" >&2
  exit 1
fi

rm -rf "${OUT}.tmp"
mkdir -p "${OUT}.tmp/crds"
GOBIN="${OUT}.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "${module}@${GATEKEEPER_VERSION}"
mv "${OUT}.tmp/gatekeeper" "${OUT}.tmp/manager"
GOBIN="${OUT}.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "${module}/cmd/gator@${GATEKEEPER_VERSION}"
cp "${dir}"/charts/gatekeeper/crds/*.yaml "${OUT}.tmp/crds/"
chmod -R u+w "${OUT}.tmp"
rm -rf "${OUT}"
mv "${OUT}.tmp" "${OUT}"
echo "Built into ${OUT}"
