#!/usr/bin/env bash
# make demo: a local cluster with real Gatekeeper, the operator, the full sample CR, a
# violating pod denied, a compliant pod admitted, a feature switched off. KEEP=1 leaves the
# cluster and the operator running afterwards.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "${root}"
source hack/lib/cluster-env.sh

export KUBECONFIG="${ADMIN_KUBECONFIG}"
k() { "${KUBECTL_BIN}" "$@"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
operator_pid=""
cleanup() {
  local rc=$?
  if [[ "${KEEP:-0}" == "1" ]]; then
    step "KEEP=1: cluster and operator left running"
    echo "export KUBECONFIG=${KUBECONFIG}; ${KUBECTL_BIN} get psc"
    echo "operator log: ${LOG_DIR}/operator.log (pid ${operator_pid}); stop everything with: make cluster-down"
    exit "${rc}"
  fi
  step "Tearing down"
  if [[ -n "${operator_pid}" ]]; then kill "${operator_pid}" 2>/dev/null || true; wait "${operator_pid}" 2>/dev/null || true; fi
  hack/cluster-down.sh
  exit "${rc}"
}
trap cleanup EXIT

step "Starting the local cluster (etcd, kube-apiserver, Gatekeeper)"
t0=$(now)
hack/cluster-up.sh
echo "cluster up in $(elapsed "${t0}")s"

step "Installing the CRD and the admission probe's namespace, and starting the operator"
k apply --server-side -f config/crd/bases/ >/dev/null
k apply --server-side -f config/probe/probe.yaml >/dev/null
k wait --for=condition=Established crd/podsecurityconstraints.policy.podsecurity.dev --timeout=60s >/dev/null
mkdir -p "${LOG_DIR}"
"${root}/bin/manager" --kubeconfig="${KUBECONFIG}" --leader-elect=false --metrics-bind-address=0 \
  --health-probe-bind-address=127.0.0.1:0 --status-refresh-interval=5s >"${LOG_DIR}/operator.log" 2>&1 &
operator_pid=$!
echo "operator running (pid ${operator_pid}), log in ${LOG_DIR}/operator.log"

step "Applying config/samples/policy_v1alpha1_podsecurityconstraints_full.yaml (all 17 features)"
t0=$(now)
k apply -f config/samples/policy_v1alpha1_podsecurityconstraints_full.yaml
k wait --for=condition=Ready psc/cluster --timeout=120s
echo "all features enforced $(elapsed "${t0}")s after applying the sample"

step "kubectl get psc"
k get psc
step "What the operator created: one ConstraintTemplate for every feature, one constraint per enforcement action"
k get constrainttemplates -l app.kubernetes.io/managed-by=psc-operator,policy.podsecurity.dev/component=policy
k get pscpodsecurity
echo "features enforced by psc-deny: $(k get pscpodsecurity psc-deny -o go-template='{{range $f, $_ := .spec.parameters.features}}{{$f}} {{end}}')"
step "kubectl describe psc cluster"
k describe psc cluster

k create namespace shop --dry-run=client -o yaml | k apply -f - >/dev/null

step "A pod copied from an old chart (privileged, host network, hostPath /) is denied"
if k apply -f hack/demo/privileged-pod.yaml; then
  echo "ERROR: the violating pod was admitted" >&2; exit 1
fi

step "A pod that only shares the host's PID namespace is denied by hostNamespaces"
if k apply -f hack/demo/hostpid-pod.yaml; then
  echo "ERROR: the hostPID pod was admitted" >&2; exit 1
fi

step "A compliant 3-container pod is admitted"
k apply -f templates/testdata/pods/compliant.yaml

step "Switching hostNamespaces off"
k patch psc cluster --type=merge -p '{"spec":{"hostNamespaces":{"enabled":false}}}'
k wait --for=jsonpath='{.status.enabledFeatures}'=16 psc/cluster --timeout=60s >/dev/null
k wait --for=condition=Ready psc/cluster --timeout=60s >/dev/null
# Switching a feature off only removes it from its constraint's parameters; the template stays.
for _ in $(seq 1 30); do
  [[ -z "$(k get pscpodsecurity psc-deny -o jsonpath='{.spec.parameters.features.hostNamespaces}' 2>/dev/null)" ]] && break
  sleep 1
done
k get psc
echo "features enforced by psc-deny: $(k get pscpodsecurity psc-deny -o go-template='{{range $f, $_ := .spec.parameters.features}}{{$f}} {{end}}')"
step "The hostPID pod is now admitted"
for i in $(seq 1 20); do
  if k apply -f hack/demo/hostpid-pod.yaml 2>/dev/null; then break; fi
  [[ $i == 20 ]] && { echo "ERROR: still denied after switching the feature off" >&2; exit 1; }
  sleep 1
done

step "Workloads off (spec.workloads.enabled: false): a privileged Deployment is accepted"
k patch psc cluster --type=merge -p '{"spec":{"workloads":{"enabled":false}}}'
k wait --for=condition=Ready psc/cluster --timeout=60s >/dev/null
# The ExpansionTemplates are pruned; Gatekeeper stops expanding once it has seen the deletion.
for i in $(seq 1 30); do
  if k apply -f hack/demo/privileged-deployment.yaml 2>/dev/null; then break; fi
  [[ $i == 30 ]] && { echo "ERROR: the Deployment is still denied with workloads off" >&2; exit 1; }
  sleep 1
done
# kube-controller-manager gives every namespace a default ServiceAccount.
if k -n shop get serviceaccount default >/dev/null 2>&1; then
  echo "...and only its ReplicaSet finds out, when it tries to create the pod:"
  for i in $(seq 1 60); do
    events=$(k -n shop get events --field-selector reason=FailedCreate -o jsonpath='{range .items[*]}{.involvedObject.kind}/{.involvedObject.name}: {.message}{"\n"}{end}' 2>/dev/null || true)
    if [[ -n "${events}" ]]; then echo "${events}" | head -n 1; break; fi
    [[ $i == 60 ]] && { echo "ERROR: the ReplicaSet reported no FailedCreate" >&2; exit 1; }
    sleep 1
  done
else
  echo "(kube-controller-manager is not running in this cluster, so no ReplicaSet tries to create the pod)"
fi
k -n shop delete deployment node-agent --wait=false >/dev/null

step "Workloads on (the default): kubectl apply of the same Deployment fails at once"
k patch psc cluster --type=merge -p '{"spec":{"workloads":{"enabled":true}}}'
k wait --for=condition=WorkloadsChecked psc/cluster --timeout=60s >/dev/null
k get psc cluster -o jsonpath='{range .status.conditions[?(@.type=="WorkloadsChecked")]}WorkloadsChecked={.status} ({.reason}): {.message}{"\n"}{end}'
denied=""
for _ in $(seq 1 30); do
  if out=$(k apply -f hack/demo/privileged-deployment.yaml 2>&1); then
    k -n shop delete deployment node-agent --wait=false >/dev/null; sleep 1; continue
  fi
  denied="${out}"; break
done
if [[ -z "${denied}" ]]; then echo "ERROR: the privileged Deployment was admitted with workloads on" >&2; exit 1; fi
echo "${denied}"

step "A pod with no securityContext at all (as most charts ship it) is denied"
if k apply -f hack/demo/bare-pod.yaml; then echo "ERROR: the bare pod was admitted" >&2; exit 1; fi

step "setDefaults: true — Gatekeeper's mutation completes such pods instead (PodSecurityPolicy-style)"
k patch psc cluster --type=merge -p '{"spec":{"setDefaults":true}}'
k wait --for=condition=DefaultsActive psc/cluster --timeout=120s >/dev/null
k get psc cluster -o jsonpath='{range .status.conditions[?(@.type=="DefaultsActive")]}DefaultsActive={.status} ({.reason}): {.message}{"\n"}{end}'
for i in $(seq 1 30); do
  if k apply -f hack/demo/bare-pod.yaml 2>/dev/null; then break; fi
  [[ $i == 30 ]] && { echo "ERROR: the bare pod is still denied with setDefaults" >&2; exit 1; }
  sleep 1
done
echo "stored with the defaults:"
k -n shop get pod bare -o jsonpath='pod: {.spec.securityContext}{"\n"}{range .spec.initContainers[*]}{.name}: {.securityContext}{"\n"}{end}{range .spec.containers[*]}{.name}: {.securityContext}{"\n"}{end}'

step "Done"
