#!/usr/bin/env bash
# make bench-operator: the operator's own cost on the local cluster (real Gatekeeper, audit every
# GATEKEEPER_AUDIT_INTERVAL seconds) with the full sample, read from its own metrics endpoint, and
# printed against the targets of issue 13:
#   - apply -> all features Enforced (Ready=True), BENCH_RUNS times from a cluster without the CR
#     (templates, constraint CRDs and constraints all created anew), p50 and max, with the time of
#     each phase the operator logs (templates applied, constraints applied);
#   - at steady state over BENCH_WINDOW seconds: API reads and writes per minute
#     (rest_client_requests_total by method; GET includes the informers' list and watch calls),
#     reconciles per minute, status writes per audit cycle (psc_status_updates_total), RSS
#     (process_resident_memory_bytes, with the anonymous and file-backed parts from /proc).
# BENCH_MANAGER is the binary (make bench-operator builds it as the image does: static, stripped;
# default bin/manager). The operator runs with its default flags (leader election off, admission
# probe on; log times as Unix epochs, for the phases) plus BENCH_OPERATOR_ARGS, with GOGC=50 as
# the Deployment sets it (BENCH_GOGC overrides). Uses a running local cluster if there is one
# (same ports), else starts one and stops it afterwards (KEEP=1 keeps it). The load average is
# printed with the figures: on a shared machine they are only comparable at similar load.
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
load() { cut -d' ' -f1-3 /proc/loadavg; }
# wait_for TIMEOUT ARGS...: kubectl wait ARGS until it succeeds. kubectl wait fails at once, rather
# than waiting, while the object has no status.conditions yet (a CRD or our CR just created).
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until k wait "$@" --timeout=5s >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then k wait "$@" --timeout=1s; return 1; fi
    sleep 0.05
  done
}

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
wait_for 60 --for=condition=Established crd/podsecurityconstraints.policy.podsecurity.dev
k delete psc --all --wait=true --timeout=60s >/dev/null 2>&1 || true
# The admission probe's namespace, as an install has it: Ready waits for the probe's verdict.
k apply -k config/probe >/dev/null

mkdir -p "${LOG_DIR}"
log="${LOG_DIR}/operator-bench.log"
# GOGC as config/manager and the Helm chart set it; BENCH_GOGC= (empty) for Go's default.
# shellcheck disable=SC2086 # BENCH_OPERATOR_ARGS: flags split on spaces
GOGC="${BENCH_GOGC-50}" "${BENCH_MANAGER:-${root}/bin/manager}" --kubeconfig="${KUBECONFIG}" --metrics-bind-address="127.0.0.1:${METRICS_PORT}" \
  --health-probe-bind-address=127.0.0.1:0 --zap-time-encoding=epoch ${BENCH_OPERATOR_ARGS:-} >"${log}" 2>&1 &
operator_pid=$!
scrape() { curl -sf "http://127.0.0.1:${METRICS_PORT}/metrics"; }
for _ in $(seq 1 100); do scrape >/dev/null 2>&1 && break; sleep 0.2; done
scrape >/dev/null || { echo "the operator's metrics endpoint did not come up; log: ${LOG_DIR}/operator-bench.log" >&2; exit 1; }

# sum FILE REGEX: the sum of the samples whose line matches REGEX.
sum() { awk -v re="$2" '$0 !~ /^#/ && $0 ~ re { s += $NF } END { printf "%.0f", s }' "$1"; }

# phases FROM T0: the seconds after T0 at which the operator's log (lines FROM on) shows the
# first and last ConstraintTemplate and the first and last constraint applied, and the admission
# probe's first denied probe pod (Ready follows with the next status write).
phases() {
  tail -n +"$1" "${log}" | awk -v t0="$2" '
    /"msg":"Applied object"/ {
      match($0, /"ts":[0-9.]+/); ts = substr($0, RSTART + 5, RLENGTH - 5) - t0
      if ($0 ~ /"name":"pscadmissionprobe"|"kind":"PSCAdmissionProbe"/) next # the probe policy, below
      if ($0 ~ /"kind":"ConstraintTemplate"/) { if (t1 == "") t1 = ts; t2 = ts }
      else if ($0 ~ /"kind":"PSC/) { if (c1 == "") c1 = ts; c2 = ts }
    }
    /"msg":"Changed admission verdict".*"to":"Enforced"/ {
      match($0, /"ts":[0-9.]+/); p = substr($0, RSTART + 5, RLENGTH - 5) - t0
    }
    END { printf "templates %s-%ss, constraints %s-%ss, probe denied %ss", fmt(t1), fmt(t2), fmt(c1), fmt(c2), fmt(p) }
    function fmt(v) { return v == "" ? "-" : sprintf("%.2f", v) }'
}

times=()
for i in $(seq 1 "${RUNS}"); do
  k delete psc cluster --ignore-not-found --wait=true --timeout=120s >/dev/null
  # Each run starts from Gatekeeper without our templates or their constraint CRDs. The local
  # cluster runs no garbage collector, which would delete the CRDs with their templates (their
  # owner): delete them here.
  crds=$(k get crd -o name | grep '^customresourcedefinition.apiextensions.k8s.io/psc[a-z]*\.constraints\.gatekeeper\.sh$' || true)
  if [[ -n "${crds}" ]]; then
    # shellcheck disable=SC2086 # one name per word
    k delete --ignore-not-found --wait=true --timeout=60s ${crds} >/dev/null
  fi
  sleep 2 # let the deletions' reconciles and Gatekeeper settle before the clock starts
  from=$(( $(wc -l <"${log}") + 1 ))
  t0=$(now)
  k apply -f "${SAMPLE}" >/dev/null
  wait_for 180 --for=condition=Ready psc/cluster
  t=$(awk -v a="${t0}" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  enforced=$(k get psc cluster -o jsonpath='{.status.enforcedFeatures}/{.status.enabledFeatures}')
  echo "run ${i}: apply -> Ready (${enforced} enforced) in ${t}s ($(phases "${from}" "${t0}"); load $(load))"
  times+=("${t}")
done
read -r p50 max < <(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)], a[NR] }')

load_runs="$(load)"
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
# RssAnon is the operator's own memory (Go heap, stacks, runtime); RssFile is pages of the
# binary it has touched, which the kernel can drop and read again.
anon=$(awk '/^RssAnon:/ { printf "%.1f", $2 / 1024 }' "/proc/${operator_pid}/status")
file=$(awk '/^RssFile:/ { printf "%.1f", $2 / 1024 }' "/proc/${operator_pid}/status")
load_end="$(load)"
rm -f "${s0}" "${s1}"

features=$(k get psc cluster -o jsonpath='{.status.enabledFeatures}')
rpm=$(per_min "${reads}")
per_cycle=$(awk -v s="${status}" -v c="${cycles}" 'BEGIN { printf "%.2f", s / c }')
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t ? "met" : "NOT met") }'; }

row() { printf '  %-36s %-28s %-10s %s\n' "$@"; }
echo
echo "psc-operator bench: full sample (${features} features), ${RUNS} runs, ${WINDOW}s steady-state window"
echo "load average (1/5/15 min): ${load_runs} after the runs, ${load_end} at the end; 2 cores shared"
echo
row "figure" "measured" "target" "verdict"
row "apply -> all features Enforced p50" "${p50} s (max ${max} s)" "<= 3 s" "$(verdict "${p50}" 3)"
row "API reads per minute" "${rpm}" "<= 12" "$(verdict "${rpm}" 12)"
row "status writes per audit cycle" "${per_cycle} (${status} in ${cycles})" "<= 1" "$(verdict "${per_cycle}" 1)"
row "RSS" "${rss} MiB" "<= 48 MiB" "$(verdict "${rss}" 48)"
echo
echo "  also: API writes per minute $(per_min "${writes}"), reconciles per minute $(per_min "${reconciles}"),"
echo "        RSS ${anon} MiB anonymous + ${file} MiB file-backed (binary pages), Go heap in use ${heap} MiB"
