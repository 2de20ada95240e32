#!/usr/bin/env bash
# Stops and starts ONLY the local cluster's Gatekeeper process, leaving its CRDs, its objects and its
# webhook configurations registered: what a cluster sees when Gatekeeper crashes, is OOM-killed or
# becomes unreachable. For failure-mode tests.
#
# Usage:
#   hack/gatekeeper.sh stop      stop the process (SIGTERM; webhook configurations stay)
#   hack/gatekeeper.sh start     start it if it is not running, wait until it is ready and the
#                                apiserver reaches it; registers the webhook configurations only if
#                                they are missing
#   hack/gatekeeper.sh restart   stop, then start (e.g. to apply a new GATEKEEPER_EXTRA_ARGS)
#   hack/gatekeeper.sh status    running or not, and which webhook configurations are registered
#
# While Gatekeeper is stopped with its webhooks registered, the apiserver behaves as with the chart:
#   - validation.gatekeeper.sh and mutation.gatekeeper.sh (failurePolicy Ignore by default; see
#     GATEKEEPER_FAILURE_POLICY, GATEKEEPER_MUTATION_FAILURE_POLICY): requests are admitted unchecked
#     and unmutated, each after a failed connection attempt;
#   - check-ignore-label.gatekeeper.sh (failurePolicy Fail): every namespace CREATE/UPDATE is rejected.
# Contrast `hack/cluster-up.sh gatekeeper-stop`, which deletes the webhook configurations first (as an
# uninstall does).
#
# Honours the same environment as hack/cluster-up.sh (ports, GATEKEEPER_OPERATIONS,
# GATEKEEPER_EXTRA_ARGS, ...; see hack/lib/cluster-env.sh). The cluster must be up.
set -euo pipefail

# cluster-up.sh defines the functions and runs nothing when sourced.
# shellcheck source-path=SCRIPTDIR source=cluster-up.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-up.sh"

gk_start() {
  require_apiserver
  [[ -x "${GATEKEEPER_BIN}" ]] || cluster_die "${GATEKEEPER_BIN} is missing; run hack/cluster-up.sh first"
  gatekeeper_crds_installed || cluster_die "Gatekeeper's CRDs are not installed; run hack/cluster-up.sh gatekeeper-start"
  if cluster_running_pid gatekeeper >/dev/null; then
    wait_for gatekeeper "Gatekeeper /readyz and /healthz on 127.0.0.1:${GATEKEEPER_HEALTH_PORT}" gatekeeper_ready
  else
    cluster_check_ports "${GATEKEEPER_PORT}:GATEKEEPER_PORT:Gatekeeper webhook" \
      "${GATEKEEPER_HEALTH_PORT}:GATEKEEPER_HEALTH_PORT:Gatekeeper health"
    [[ "${GATEKEEPER_METRICS}" != prometheus ]] ||
      cluster_check_ports "${GATEKEEPER_METRICS_PORT}:GATEKEEPER_METRICS_PORT:Gatekeeper metrics"
    start_gatekeeper
  fi
  if gatekeeper_webhook_registered; then
    wait_for gatekeeper "the apiserver to reach Gatekeeper's webhook (server-side dry-run)" gatekeeper_admits
  else
    register_gatekeeper_webhooks
  fi
  cluster_log "Gatekeeper is up (took $(elapsed)s)"
}

gk_stop() {
  cluster_stop_component gatekeeper
  if cluster_running_pid kube-apiserver >/dev/null && gatekeeper_any_webhook_registered; then
    cluster_log "Gatekeeper is stopped; its webhook configurations stay registered (namespace changes are rejected until it is back)"
  else
    cluster_log "Gatekeeper is stopped"
  fi
}

gk_status() {
  local pid
  if pid="$(cluster_running_pid gatekeeper)"; then
    if gatekeeper_ready; then cluster_log "gatekeeper: running (pid ${pid}), ready"; else cluster_log "gatekeeper: running (pid ${pid}), not ready"; fi
  else
    cluster_log "gatekeeper: not running"
  fi
  if cluster_running_pid kube-apiserver >/dev/null && apiserver_healthy; then
    if cluster_kubectl get validatingwebhookconfiguration "${GATEKEEPER_VWH_NAME}" >/dev/null 2>&1; then
      cluster_log "ValidatingWebhookConfiguration ${GATEKEEPER_VWH_NAME}: registered"
    else
      cluster_log "ValidatingWebhookConfiguration ${GATEKEEPER_VWH_NAME}: not registered"
    fi
    if cluster_kubectl get mutatingwebhookconfiguration "${GATEKEEPER_MWH_NAME}" >/dev/null 2>&1; then
      cluster_log "MutatingWebhookConfiguration ${GATEKEEPER_MWH_NAME}: registered"
    else
      cluster_log "MutatingWebhookConfiguration ${GATEKEEPER_MWH_NAME}: not registered"
    fi
  fi
}

case "${1:-}" in
  stop) gk_stop ;;
  start) gk_start ;;
  restart)
    gk_stop
    gk_start
    ;;
  status) gk_status ;;
  -h | --help | help) sed -n '2,/^set -euo pipefail/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
  *) cluster_die "usage: hack/gatekeeper.sh stop|start|restart|status" ;;
esac
