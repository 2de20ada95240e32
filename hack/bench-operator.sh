#!/usr/bin/env bash
# make bench-operator: the operator's own cost on the local cluster (real Gatekeeper, audit every
# GATEKEEPER_AUDIT_INTERVAL seconds) with the full sample, read from its own metrics endpoint:
#   - apply -> all features Enforced (Ready=True), BENCH_RUNS times from a cluster without the CR
#     (templates, constraint CRDs and constraints all created anew), p50 and max;
#   - at steady state over BENCH_WINDOW seconds: API reads and writes per minute
#     (rest_client_requests_total by method; GET includes the informers' list and watch calls),
#     reconciles per minute, status writes per audit cycle (psc_status_updates_total), RSS
#     (process_resident_memory_bytes).
# The operator runs with its default flags (leader election off). Uses a running local cluster if
# there is one (same ports), else starts one and stops it afterwards (KEEP=1 keeps it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "${root}"
source hack/lib/cluster-env.sh

export KUBECONFIG="${ADMIN_KUBECONFIG}"
RUNS="${BENCH_RUNS:-5}"
WINDOW="${BENCH_WINDOW:-120}"
SETTLE="${BENCH_SETTLE:-20}"
METRICS_PORT="${PSC_METRICS_PORT:-$((GATEKEEPER_METRICS_PORT + 1))}"
SAMPLE=config/samples/policy_v1alpha1_podsecurityconstraints_full.yaml
k() { "${KUBECTL_BIN}" "$@"; }
now() { date +%s.%N; }

operator_pid=""
started_cluster=0
cleanup() {
  local rc=$?
  if [[ -n "${operator_pid}" ]]; then
    k delete psc cluster --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
    kill "${operator_pid}" 2>/dev/null || true
    wait "${operator_pid}" 2>/dev/null || true
  fi
  if [[ "${started_cluster}" == "1" && "${KEEP:-0}" != "1" ]]; then hack/cluster-down.sh; fi
  exit "${rc}"
}
trap cleanup EXIT

if ! k get --raw /readyz >/dev/null 2>&1; then
  hack/cluster-up.sh
  started_cluster=1
fi
k apply --server-side -f config/crd/bases/ >/dev/null
k wait --for=condition=Established crd/podsecurityconstraints.policy.podsecurity.dev --timeout=60s >/dev/null
k delete psc --all --wait=true --timeout=60s >/dev/null 2>&1 || true

mkdir -p "${LOG_DIR}"
"${root}/bin/manager" --kubeconfig="${KUBECONFIG}" --metrics-bind-address="127.0.0.1:${METRICS_PORT}" \
  --health-probe-bind-address=127.0.0.1:0 >"${LOG_DIR}/operator-bench.log" 2>&1 &
operator_pid=$!
scrape() { curl -sf "http://127.0.0.1:${METRICS_PORT}/metrics"; }
for _ in $(seq 1 100); do scrape >/dev/null 2>&1 && break; sleep 0.2; done
scrape >/dev/null || { echo "the operator's metrics endpoint did not come up; log: ${LOG_DIR}/operator-bench.log" >&2; exit 1; }

# sum FILE REGEX: the sum of the samples whose line matches REGEX.
sum() { awk -v re="$2" '$0 !~ /^#/ && $0 ~ re { s += $NF } END { printf "%.0f", s }' "$1"; }

times=()
for i in $(seq 1 "${RUNS}"); do
  k delete psc cluster --ignore-not-found --wait=true --timeout=120s >/dev/null
  # Each run starts from Gatekeeper without our templates or their constraint CRDs. The local
  # cluster runs no garbage collector, which would delete the CRDs with their templates (their
  # owner): delete them here.
  crds=$(k get crd -o name | grep '^customresourcedefinition.apiextensions.k8s.io/psc[a-z]*\.constraints\.gatekeeper\.sh$' || true)
  if [[ -n "${crds}" ]]; then
    # shellcheck disable=SC2086 # one name per word
    k delete --wait=true --timeout=60s ${crds} >/dev/null
  fi
  t0=$(now)
  k apply -f "${SAMPLE}" >/dev/null
  k wait --for=condition=Ready psc/cluster --timeout=180s >/dev/null
  t=$(awk -v a="${t0}" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  enforced=$(k get psc cluster -o jsonpath='{.status.enforcedFeatures}/{.status.enabledFeatures}')
  echo "run ${i}: apply -> Ready (${enforced} enforced) in ${t}s"
  times+=("${t}")
done
read -r p50 max < <(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)], a[NR] }')

echo "steady state: settling ${SETTLE}s, then measuring ${WINDOW}s (Gatekeeper audit every ${GATEKEEPER_AUDIT_INTERVAL}s)"
sleep "${SETTLE}"
s0="$(mktemp)"; s1="$(mktemp)"
scrape >"${s0}"
sleep "${WINDOW}"
scrape >"${s1}"

delta() { echo $(( $(sum "${s1}" "$1") - $(sum "${s0}" "$1") )); }
per_min() { awk -v d="$1" -v w="${WINDOW}" 'BEGIN { printf "%.1f", d * 60 / w }'; }
reads=$(delta '^rest_client_requests_total.*method="GET"')
writes=$(delta '^rest_client_requests_total.*method="(POST|PUT|PATCH|DELETE)"')
reconciles=$(delta '^controller_runtime_reconcile_total')
status=$(delta '^psc_status_updates_total')
cycles=$(awk -v w="${WINDOW}" -v a="${GATEKEEPER_AUDIT_INTERVAL}" 'BEGIN { printf "%.1f", w / a }')
rss=$(awk '/^process_resident_memory_bytes/ { printf "%.1f", $NF / 1048576 }' "${s1}")
heap=$(awk '/^go_memstats_heap_inuse_bytes/ { printf "%.1f", $NF / 1048576 }' "${s1}")
rm -f "${s0}" "${s1}"

cat <<REPORT

psc-operator bench (full sample, ${RUNS} runs, ${WINDOW}s steady-state window)
  apply -> all Enforced     p50 ${p50}s   max ${max}s
  API reads per minute      $(per_min "${reads}")
  API writes per minute     $(per_min "${writes}")
  reconciles per minute     $(per_min "${reconciles}")
  status writes             ${status} in ${cycles} audit cycles
  RSS                       ${rss} MiB (Go heap in use ${heap} MiB)
REPORT
