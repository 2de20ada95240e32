#!/usr/bin/env bash
# make bench: policy evaluation cost, one review at a time, in one run:
#   1. Go benchmarks through the frameworks client (K8sNativeValidation + Rego drivers,
#      Gatekeeper's K8s target; templates/bench*_test.go), BENCH_COUNT runs each; the medians
#      of ns/op and allocs/op are printed as tables with ratios.
#   2. `gator bench` (Gatekeeper's own benchmark command) on the same objects and pods.
# Our side is config/samples/..._full.yaml (17 features: one template, one constraint). gatekeeper-library's 15 matching
# PSP templates, configured alike, are measured when PSC_GATEKEEPER_LIBRARY names a checkout
# of it (nothing of the library is vendored in this repository); otherwise those rows are
# skipped with a message. BENCH=regexp narrows the Go benchmarks; GATOR_BENCH=0 skips gator.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "${root}"

COUNT="${BENCH_COUNT:-5}"
BENCH="${BENCH:-.}"
GATOR="${GATOR:-${root}/bin/gatekeeper/${GATEKEEPER_VERSION:-v3.23.1}/gator}"
GATOR_ITERATIONS="${GATOR_ITERATIONS:-1000}"
out="$(mktemp -d)"
trap 'rm -rf "${out}"' EXIT

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; $(date -u +%FT%TZ)"
if [[ -z "${PSC_GATEKEEPER_LIBRARY:-}" ]]; then
  echo "PSC_GATEKEEPER_LIBRARY is not set: gatekeeper-library is not measured (set it to a checkout of github.com/open-policy-agent/gatekeeper-library)."
fi

go test -run '^$' -bench "${BENCH}" -benchmem -count="${COUNT}" ./templates/... | tee "${out}/go.txt"

# Medians per benchmark, then one table per benchmark family with ratios to a reference row.
awk -v ref_library="library/default" '
  /^Benchmark/ && / ns\/op/ {
    name = $1; sub(/-[0-9]+$/, "", name)
    for (i = 2; i <= NF; i++) { if ($i == "ns/op") ns = $(i-1); if ($i == "allocs/op") al = $(i-1) }
    n[name]++; t[name, n[name]] = ns; a[name, n[name]] = al
    if (!(name in seen)) { seen[name] = 1; order[++k] = name }
  }
  function median(arr, name, cnt,   i, j, tmp, v) {
    for (i = 1; i <= cnt; i++) v[i] = arr[name, i] + 0
    for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
    return (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
  }
  END {
    if (k == 0) exit
    printf "\nGo benchmarks, median of %d runs (ms per review, allocations per review)\n", n[order[1]]
    printf "%-62s %10s %10s %8s\n", "benchmark", "ms/review", "allocs", "ratio"
    for (i = 1; i <= k; i++) {
      name = order[i]; ms[name] = median(t, name, n[name]) / 1e6; allocs[name] = median(a, name, n[name])
    }
    for (i = 1; i <= k; i++) {
      name = order[i]; ratio = ""
      # BenchmarkLibrary: each row against the library on Gatekeeper'"'"'s default, same pod.
      if (name ~ /^BenchmarkLibrary\//) {
        pod = name; sub(/.*\//, "", pod); refname = "BenchmarkLibrary/" ref_library "/" pod
        if (refname in ms && ms[refname] > 0) ratio = sprintf("%.2fx", ms[name] / ms[refname])
      }
      printf "%-62s %10.3f %10d %8s\n", name, ms[name], allocs[name], ratio
    }
  }' "${out}/go.txt"

# Latency ratios on a shared machine: every side reviews the pod in turn, in one loop.
if [[ -n "${PSC_GATEKEEPER_LIBRARY:-}" ]]; then
  echo
  PSC_BENCH_INTERLEAVED=1 go test -run '^$' -bench '^BenchmarkLibraryInterleaved$' -benchtime="${INTERLEAVED_ITERATIONS:-300}x" -count=1 ./templates/ |
    grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok\)'
  # Where the all-violating review's time goes: parts of the template's CEL replaced.
  echo
  PSC_BENCH_INTERLEAVED=1 go test -run '^$' -bench '^BenchmarkTemplateVariants$' -benchtime="${INTERLEAVED_ITERATIONS:-300}x" -count=1 ./templates/ |
    grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok\|Benchmark\)'
fi

[[ "${GATOR_BENCH:-1}" == "0" ]] && exit 0
if ! command -v jq >/dev/null; then
  echo "jq not found: gator bench skipped (apt-get install jq)"
  exit 0
fi
# gator is built with Gatekeeper (cached in bin/gatekeeper/<version>).
[[ -x "${GATOR}" ]] || BIN_DIR="${root}/bin" hack/build-gatekeeper.sh

# gator bench on the same objects. `gator bench -e cel` loads only the CEL driver and skips
# templates without CEL code, so the library as Gatekeeper runs it by default is approximated
# by the sum of its CEL templates under -e cel and its Rego-only templates under -e rego.
PSC_BENCH_GATOR_DIR="${out}/gator" go test -count=1 -run '^TestWriteGatorBenchInputs$' ./templates/ >/dev/null
p50() { # side engine pod -> "p50_ms allocs violations"
  "${GATOR}" bench -f "${out}/gator/$1" -f "${out}/gator/pods/$3" -e "$2" --iterations "${GATOR_ITERATIONS}" \
    --warmup 50 --memory -o json 2>/dev/null |
    jq -r '.[0] | [(.latencies.p50 | tostring), (.memoryStats.allocsPerReview | tostring), (.violationCount | tostring)] | join(" ")'
}
to_ms() { # Go duration string -> milliseconds
  awk -v d="$1" 'BEGIN { v = d + 0; if (d ~ /ms$/) print v; else if (d ~ /µs$|us$/) print v / 1000; else if (d ~ /ns$/) print v / 1e6; else print v * 1000 }'
}
echo
echo "gator bench (${GATOR_ITERATIONS} iterations), p50 per review"
printf "%-34s %-14s %10s %10s %6s\n" "side" "pod" "p50 ms" "allocs" "viol."
sides=("psc cel" "psc rego")
[[ -d "${out}/gator/library" ]] && sides+=("library cel" "library rego" "library-rego-only rego")
for pod in compliant all-violating; do
  for s in "${sides[@]}"; do
    read -r side engine <<<"${s}"
    read -r d allocs viol <<<"$(p50 "${side}" "${engine}" "${pod}")"
    printf "%-34s %-14s %10.3f %10s %6s\n" "${side} -e ${engine}" "${pod}" "$(to_ms "${d}")" "${allocs}" "${viol}"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
