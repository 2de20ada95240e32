# shellcheck shell=bash disable=SC2034 # variables are used by the scripts that source this file
# Shared settings and helpers for the local control plane (hack/cluster-up.sh, hack/cluster-down.sh,
# hack/gatekeeper.sh). Source it; it defines variables and functions only and starts nothing.
#
# Components: etcd, kube-apiserver, kube-controller-manager, Gatekeeper (validation, audit, status,
# generate, mutation), each a local process on 127.0.0.1. No scheduler and no kubelet: pods that
# controllers create stay Pending.
#
# Scripts (all honour every setting below; see each script's header):
#   hack/cluster-up.sh [up]            start whatever is not running (idempotent)
#   hack/cluster-up.sh status          what is running
#   hack/cluster-up.sh gatekeeper-stop / gatekeeper-start / gatekeeper-crds / gatekeeper-crds-delete
#                                      Gatekeeper "uninstalled"/"installed": webhook configurations
#                                      deleted/registered together with the process
#   hack/gatekeeper.sh stop|start|restart|status
#                                      ONLY the Gatekeeper process; its webhook configurations stay
#                                      registered (Gatekeeper crashed / unreachable, for failure-mode
#                                      tests). While it is stopped the apiserver fails open on the
#                                      validation and mutation webhooks (failurePolicy Ignore) but
#                                      REJECTS namespace creates/updates (check-ignore-label webhook,
#                                      failurePolicy Fail, as Gatekeeper's chart).
#   hack/cluster-down.sh               stop everything and remove LOCAL_DIR
#
# Every setting can be overridden from the environment:
#   KUBE_VERSION             kube-apiserver/kubectl/kube-controller-manager version built by
#                            hack/build-kube.sh                                             (v1.36.2)
#   GATEKEEPER_VERSION       Gatekeeper version built by hack/build-gatekeeper.sh          (v3.23.1)
#   LOCAL_DIR                state directory (etcd data, certs, logs, pid files)           (<repo>/bin/local)
#   ETCD_PORT                etcd client port; the peer port is ETCD_PORT+1                (22379)
#   ETCD_PEER_PORT                                                                          (ETCD_PORT+1)
#   APISERVER_PORT           kube-apiserver secure port                                    (26443)
#   KCM_PORT                 kube-controller-manager secure port (/healthz)                (APISERVER_PORT+1)
#   KCM_CONTROLLERS          kube-controller-manager --controllers (comma-separated)       (see KCM_CONTROLLERS below)
#   GATEKEEPER_PORT          Gatekeeper webhook (HTTPS) port                               (28443)
#   GATEKEEPER_HEALTH_PORT   Gatekeeper /healthz and /readyz (HTTP)                        (28090)
#   GATEKEEPER_METRICS_PORT  Gatekeeper Prometheus port, used only when GATEKEEPER_METRICS=prometheus (28888)
#   GATEKEEPER_NAMESPACE     namespace Gatekeeper believes it runs in                      (gatekeeper-system)
#   GATEKEEPER_AUDIT_INTERVAL  seconds between audit runs                                  (10)
#   GATEKEEPER_OPERATIONS    comma-separated Gatekeeper --operation values
#                            (webhook,audit,status,generate,mutation-webhook,mutation-status)
#                            "generate" is required: it is what creates each template's constraint CRD.
#                            Without "mutation-webhook" no MutatingWebhookConfiguration is registered
#                            (an existing one is deleted): Gatekeeper without mutation.
#   GATEKEEPER_FAILURE_POLICY  failurePolicy of the validation.gatekeeper.sh webhook       (Ignore, as the chart)
#   GATEKEEPER_MUTATION_FAILURE_POLICY  failurePolicy of the mutation.gatekeeper.sh webhook (Ignore, as the chart)
#   GATEKEEPER_EXTRA_ARGS    extra flags appended to Gatekeeper's command line, split on spaces (no quoting),
#                            e.g. "--enable-k8s-native-validation=false" or
#                            "--enable-generator-resource-expansion=false". Read when Gatekeeper starts:
#                            to change it on a running cluster use `hack/gatekeeper.sh restart`.
#   GATEKEEPER_METRICS       "none" (default) or "prometheus" (see cluster-up.sh for why)
#   WAIT_TIMEOUT             seconds to wait for each component to become ready            (120)
#   GATEKEEPER=0             (cluster-up.sh only) start no Gatekeeper and install none of its CRDs
# All listeners bind 127.0.0.1 only (except Gatekeeper's Prometheus exporter when enabled).
#
# Files (stable; tests may rely on them):
#   LOCAL_DIR/kubeconfig     cluster admin (O=system:masters)
#   LOCAL_DIR/logs/NAME.log, LOCAL_DIR/pids/NAME.pid   NAME: etcd, kube-apiserver,
#                            kube-controller-manager, gatekeeper
#   LOCAL_DIR/certs/ca.crt   CA of every serving certificate (apiserver, controller manager, Gatekeeper)

CLUSTER_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

KUBE_VERSION="${KUBE_VERSION:-v1.36.2}"
GATEKEEPER_VERSION="${GATEKEEPER_VERSION:-v3.23.1}"

KUBE_BIN_DIR="${CLUSTER_REPO_ROOT}/bin/k8s/${KUBE_VERSION}"
KUBE_APISERVER_BIN="${KUBE_BIN_DIR}/kube-apiserver"
KUBECTL_BIN="${KUBE_BIN_DIR}/kubectl"
KUBE_CONTROLLER_MANAGER_BIN="${KUBE_BIN_DIR}/kube-controller-manager"
GATEKEEPER_BIN_DIR="${CLUSTER_REPO_ROOT}/bin/gatekeeper/${GATEKEEPER_VERSION}"
GATEKEEPER_BIN="${GATEKEEPER_BIN_DIR}/manager"
GATEKEEPER_CRD_DIR="${GATEKEEPER_BIN_DIR}/crds"
ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"

LOCAL_DIR="${LOCAL_DIR:-${CLUSTER_REPO_ROOT}/bin/local}"
[[ "${LOCAL_DIR}" == /* ]] || LOCAL_DIR="${PWD}/${LOCAL_DIR}"
CERT_DIR="${LOCAL_DIR}/certs"
LOG_DIR="${LOCAL_DIR}/logs"
PID_DIR="${LOCAL_DIR}/pids"
ETCD_DATA_DIR="${LOCAL_DIR}/etcd"
GATEKEEPER_STATE_DIR="${LOCAL_DIR}/gatekeeper"
GATEKEEPER_CERT_DIR="${CERT_DIR}/gatekeeper-webhook"
ADMIN_KUBECONFIG="${LOCAL_DIR}/kubeconfig"
GATEKEEPER_KUBECONFIG="${LOCAL_DIR}/gatekeeper.kubeconfig"
KCM_KUBECONFIG="${LOCAL_DIR}/kube-controller-manager.kubeconfig"

ETCD_PORT="${ETCD_PORT:-22379}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-$((ETCD_PORT + 1))}"
APISERVER_PORT="${APISERVER_PORT:-26443}"
KCM_PORT="${KCM_PORT:-$((APISERVER_PORT + 1))}"
GATEKEEPER_PORT="${GATEKEEPER_PORT:-28443}"
GATEKEEPER_HEALTH_PORT="${GATEKEEPER_HEALTH_PORT:-28090}"
GATEKEEPER_METRICS_PORT="${GATEKEEPER_METRICS_PORT:-28888}"

GATEKEEPER_NAMESPACE="${GATEKEEPER_NAMESPACE:-gatekeeper-system}"
# The placeholder Pod that stands for the local Gatekeeper process (see cluster-up.sh).
GATEKEEPER_POD_NAME="gatekeeper-local"
GATEKEEPER_AUDIT_INTERVAL="${GATEKEEPER_AUDIT_INTERVAL:-10}"
GATEKEEPER_OPERATIONS="${GATEKEEPER_OPERATIONS:-webhook,audit,status,generate,mutation-webhook,mutation-status}"
GATEKEEPER_FAILURE_POLICY="${GATEKEEPER_FAILURE_POLICY:-Ignore}"
GATEKEEPER_MUTATION_FAILURE_POLICY="${GATEKEEPER_MUTATION_FAILURE_POLICY:-Ignore}"
GATEKEEPER_EXTRA_ARGS="${GATEKEEPER_EXTRA_ARGS:-}"
GATEKEEPER_METRICS="${GATEKEEPER_METRICS:-none}"
WAIT_TIMEOUT="${WAIT_TIMEOUT:-120}"

# The controllers a workload needs to turn into Pods, plus what makes namespaces and service
# accounts behave as on a real cluster:
#   deployment, replicaset, statefulset, daemonset, job, cronjob, replicationcontroller  workloads -> Pods
#   garbage-collector            deleting a Deployment removes its ReplicaSets and Pods; Gatekeeper's
#                                *podstatuses objects are owned by the placeholder Pod GATEKEEPER_POD_NAME
#                                (a real object), so the collector keeps them
#   namespace                    deleted namespaces are emptied and go away (no longer stay Terminating)
#   serviceaccount               each namespace's "default" ServiceAccount (the ServiceAccount admission
#                                plugin rejects pods whose ServiceAccount does not exist)
#   serviceaccount-token         fills in Secrets of type kubernetes.io/service-account-token
#   root-ca-certificate-publisher  the kube-root-ca.crt ConfigMap that pods' kube-api-access volume projects
#   clusterrole-aggregation      the aggregated ClusterRoles (admin, edit, view) get their rules
#   ttl-after-finished           Jobs with ttlSecondsAfterFinished are cleaned up
# DaemonSets create no Pods: there are no Nodes.
KCM_CONTROLLERS="${KCM_CONTROLLERS:-deployment-controller,replicaset-controller,statefulset-controller,daemonset-controller,job-controller,cronjob-controller,replicationcontroller-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller,ttl-after-finished-controller}"

APISERVER_URL="https://127.0.0.1:${APISERVER_PORT}"
GATEKEEPER_WEBHOOK_URL="https://127.0.0.1:${GATEKEEPER_PORT}"

# Names of the webhook configurations Gatekeeper's chart installs (and Gatekeeper's defaults for
# --validating-webhook-configuration-name / --mutating-webhook-configuration-name).
GATEKEEPER_VWH_NAME="gatekeeper-validating-webhook-configuration"
GATEKEEPER_MWH_NAME="gatekeeper-mutating-webhook-configuration"

# ---------------------------------------------------------------------------------------------
# Messages

cluster_log() { printf '[cluster] %s\n' "$*"; }
cluster_warn() { printf '[cluster] warning: %s\n' "$*" >&2; }
cluster_die() {
  printf '[cluster] error: %s\n' "$*" >&2
  exit 1
}

# cluster_log_tail NAME: prints the last lines of bin/local/logs/NAME.log to stderr.
cluster_log_tail() {
  local file="${LOG_DIR}/$1.log"
  if [[ -f "${file}" ]]; then
    printf '[cluster] ---- last 40 lines of %s ----\n' "${file}" >&2
    tail -n 40 "${file}" >&2 || true
    printf '[cluster] ---- end of %s ----\n' "${file}" >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# Processes. A component NAME (etcd, kube-apiserver, kube-controller-manager, gatekeeper) has its pid in pids/NAME.pid.
# A pid counts as ours only if /proc/PID/exe is the expected binary AND its command line
# mentions LOCAL_DIR (so another cluster using the same /usr/bin/etcd is never touched).

cluster_component_bin() {
  case "$1" in
    etcd) echo "${ETCD_BIN}" ;;
    kube-apiserver) echo "${KUBE_APISERVER_BIN}" ;;
    kube-controller-manager) echo "${KUBE_CONTROLLER_MANAGER_BIN}" ;;
    gatekeeper) echo "${GATEKEEPER_BIN}" ;;
    *) cluster_die "unknown component $1" ;;
  esac
}

# cluster_pid_is_ours NAME PID: true if PID runs NAME's binary with our state directory.
cluster_pid_is_ours() {
  local name="$1" pid="$2" exe want
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  [[ -d "/proc/${pid}" ]] || return 1
  exe="$(readlink "/proc/${pid}/exe" 2>/dev/null)" || return 1
  exe="${exe% (deleted)}" # the binary may have been rebuilt while it ran
  want="$(readlink -f "$(cluster_component_bin "${name}")" 2>/dev/null || cluster_component_bin "${name}")"
  [[ "${exe}" == "${want}" ]] || return 1
  tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF -- "${LOCAL_DIR}" || return 1
}

# cluster_running_pid NAME: prints NAME's pid and succeeds if it is alive and ours.
cluster_running_pid() {
  local name="$1" pidfile="${PID_DIR}/$1.pid" pid
  [[ -f "${pidfile}" ]] || return 1
  pid="$(cat "${pidfile}" 2>/dev/null || true)"
  cluster_pid_is_ours "${name}" "${pid}" || return 1
  echo "${pid}"
}

# cluster_stop_component NAME: SIGTERM (then SIGKILL after 20 s) to NAME's own pid; removes its pid
# file once the process is gone. Fails if it could not be stopped.
cluster_stop_component() {
  local name="$1" pidfile="${PID_DIR}/$1.pid" pid i
  if ! pid="$(cluster_running_pid "${name}")"; then
    if [[ -f "${pidfile}" ]]; then
      cluster_log "${name}: not running (stale pid file removed)"
      rm -f "${pidfile}"
    fi
    return 0
  fi
  cluster_log "stopping ${name} (pid ${pid})"
  kill -TERM "${pid}" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    cluster_pid_is_ours "${name}" "${pid}" || break
    sleep 0.1
  done
  if cluster_pid_is_ours "${name}" "${pid}"; then
    cluster_warn "${name} (pid ${pid}) did not exit after SIGTERM; sending SIGKILL"
    kill -KILL "${pid}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      cluster_pid_is_ours "${name}" "${pid}" || break
      sleep 0.1
    done
    if cluster_pid_is_ours "${name}" "${pid}"; then
      cluster_warn "${name} (pid ${pid}) survived SIGKILL; pid file ${pidfile} kept"
      return 1
    fi
  fi
  rm -f "${pidfile}"
}

# ---------------------------------------------------------------------------------------------
# Ports

# cluster_port_busy PORT: true if something listens on TCP PORT (any local address).
cluster_port_busy() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    ss -Htln "sport = :${port}" 2>/dev/null | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null
  fi
}

# cluster_check_ports "PORT:VAR:what" ...: dies naming every busy port and the variable to change.
cluster_check_ports() {
  local spec port var what bad=0
  for spec in "$@"; do
    IFS=: read -r port var what <<<"${spec}"
    if cluster_port_busy "${port}"; then
      printf '[cluster] error: port %s (%s) is already in use; free it or choose another port with %s=<port>\n' \
        "${port}" "${what}" "${var}" >&2
      if command -v ss >/dev/null 2>&1; then
        ss -Htlnp "sport = :${port}" 2>/dev/null | sed 's/^/[cluster]   /' >&2 || true
      fi
      bad=1
    fi
  done
  ((bad == 0)) || exit 1
}

# ---------------------------------------------------------------------------------------------
# kubectl against the local cluster as cluster admin.
cluster_kubectl() {
  "${KUBECTL_BIN}" --kubeconfig "${ADMIN_KUBECONFIG}" "$@"
}
