#!/usr/bin/env bash
# Stops the local control plane started by hack/cluster-up.sh and removes its state (bin/local/).
#
# Usage: hack/cluster-down.sh
#
# Only the processes recorded in bin/local/pids/*.pid are signalled, and only after checking that
# each pid still runs the expected binary (/proc/PID/exe) with this state directory on its command
# line; nothing is ever killed by name. Idempotent: with nothing running it just removes bin/local/.
# Honours the same LOCAL_DIR/KUBE_VERSION/GATEKEEPER_VERSION settings as cluster-up.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/cluster-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cluster-env.sh"

# Gatekeeper's webhook configuration lives in etcd, which is about to be deleted, so there is no
# need to unregister it; stop in reverse start order so no component outlives what it talks to.
failed=""
for name in gatekeeper kube-controller-manager kube-apiserver etcd; do
  cluster_stop_component "${name}" || failed+=" ${name}"
done
[[ -z "${failed}" ]] || cluster_die "could not stop:${failed}; ${LOCAL_DIR} left in place"

# Refuse to remove anything that does not look like our state directory.
if [[ -d "${LOCAL_DIR}" ]]; then
  case "${LOCAL_DIR}" in
    / | "${CLUSTER_REPO_ROOT}" | "${CLUSTER_REPO_ROOT}/bin" | "${HOME:-/root}")
      cluster_die "refusing to remove LOCAL_DIR=${LOCAL_DIR}"
      ;;
  esac
  rm -rf "${LOCAL_DIR}"
  cluster_log "removed ${LOCAL_DIR}"
fi
cluster_log "local cluster is down"
