#!/usr/bin/env bash
# Local Kubernetes control plane with a real Gatekeeper, from binaries (no containers).
#
# Usage:
#   hack/cluster-up.sh [up]                 etcd + kube-apiserver + kube-controller-manager + Gatekeeper
#                                           (CRDs, manager, validating and mutating webhooks)
#   GATEKEEPER=0 hack/cluster-up.sh [up]    etcd + kube-apiserver + kube-controller-manager only: installs no
#                                           Gatekeeper CRDs and starts
#                                           no Gatekeeper (on a cluster that already has Gatekeeper's CRDs,
#                                           use gatekeeper-crds-delete, or cluster-down.sh first)
#   hack/cluster-up.sh gatekeeper-crds      install Gatekeeper's CRDs and its namespace (cluster must be up)
#   hack/cluster-up.sh gatekeeper-start     gatekeeper-crds, then start Gatekeeper and register its webhooks
#   hack/cluster-up.sh gatekeeper-stop      delete Gatekeeper's webhook configurations, stop Gatekeeper
#                                           (CRDs, templates and constraints stay, as after `helm uninstall`)
#   hack/cluster-up.sh gatekeeper-crds-delete  gatekeeper-stop, then delete Gatekeeper's CRDs (and with them
#                                           every template/constraint) and the constraint CRDs it generated
#   hack/cluster-up.sh status               what is running
#   hack/gatekeeper.sh stop|start|restart   ONLY the Gatekeeper process; webhook configurations stay registered
#   hack/cluster-down.sh                    stop everything this started and remove bin/local/
#
# Then:  export KUBECONFIG=$PWD/bin/local/kubeconfig; bin/k8s/v1.36.2/kubectl get ns
#
# Every command is idempotent: `up` starts only what is not already running and healthy, and exits 0
# at once when everything is. Ports and other settings come from the environment; see
# hack/lib/cluster-env.sh (ETCD_PORT=22379 and +1, APISERVER_PORT=26443, KCM_PORT=APISERVER_PORT+1,
# GATEKEEPER_PORT=28443, GATEKEEPER_HEALTH_PORT=28090, GATEKEEPER_AUDIT_INTERVAL=10,
# GATEKEEPER_EXTRA_ARGS, WAIT_TIMEOUT=120, ...).
# State lives in bin/local/: etcd data, certs/, logs/*.log, pids/*.pid, kubeconfig.
#
# What this cluster is, and is not:
#   - kube-apiserver with real authentication (client certificates, service-account tokens) and
#     `--authorization-mode=RBAC`; bin/local/kubeconfig is a cluster admin (O=system:masters).
#   - kube-controller-manager (its own client certificate, user system:kube-controller-manager, one
#     service account per controller as kubeadm does) with the controllers listed in KCM_CONTROLLERS:
#     Deployments, ReplicaSets, StatefulSets, Jobs, CronJobs and ReplicationControllers create their
#     Pods; the garbage collector acts on ownerReferences; deleted namespaces are emptied and removed;
#     every namespace gets its "default" ServiceAccount and kube-root-ca.crt ConfigMap. The default
#     admission plugins are all on, ServiceAccount included: pods get serviceAccountName "default"
#     and a projected kube-api-access-* volume, as on any cluster.
#   - No scheduler and no kubelet (and no Nodes): Pods stay Pending, DaemonSets create none.
#   - `--allow-privileged=true`, like real clusters, so privileged pods reach admission (and Gatekeeper).
#   - Gatekeeper runs as a local process (webhook, audit, status, generate, mutation-webhook and
#     mutation-status operations); a placeholder Pod gatekeeper-system/gatekeeper-local (Pending) stands
#     for it and owns its status objects (see start_gatekeeper); its validating and mutating webhooks are
#     registered by URL https://127.0.0.1:$GATEKEEPER_PORT (/v1/admit, /v1/mutate). All of its CRDs
#     are installed (templates, mutators Assign/AssignMetadata/ModifySet/AssignImage,
#     ExpansionTemplate, ...); generator resource expansion is on (Gatekeeper's default) and the
#     validating webhook receives every kind, so workloads are judged as the Pods they would create.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/cluster-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cluster-env.sh"

WEBHOOK_TEMPLATE="${CLUSTER_REPO_ROOT}/hack/cluster/gatekeeper-webhooks.yaml.tmpl"
MUTATING_WEBHOOK_TEMPLATE="${CLUSTER_REPO_ROOT}/hack/cluster/gatekeeper-mutating-webhook.yaml.tmpl"
START_NS="$(date +%s%N)"

elapsed() {
  local now
  now="$(date +%s%N)"
  awk -v a="${START_NS}" -v b="${now}" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'
}

# ---------------------------------------------------------------------------------------------
# Prerequisites

apt_install() {
  local sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || cluster_die "need root (or sudo) to apt-get install $*"
    sudo="sudo"
  fi
  cluster_log "installing $* with apt-get"
  # Refresh the package lists once per run, then install non-interactively.
  if [[ -z "${APT_UPDATED:-}" ]]; then
    ${sudo} env DEBIAN_FRONTEND=noninteractive apt-get update -qq || cluster_die "apt-get update failed"
    APT_UPDATED=1
  fi
  ${sudo} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
    cluster_die "apt-get install $* failed"
}

ensure_prerequisites() {
  local missing=()
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v ss >/dev/null 2>&1 || missing+=(iproute2)
  [[ -x "${ETCD_BIN}" ]] || missing+=(etcd-server)
  if ((${#missing[@]} > 0)); then
    apt_install "${missing[@]}"
  fi
  [[ -x "${ETCD_BIN}" ]] || cluster_die "${ETCD_BIN} is missing after installing etcd-server"

  "${CLUSTER_REPO_ROOT}/hack/build-kube.sh"
  "${CLUSTER_REPO_ROOT}/hack/build-gatekeeper.sh"
  local f
  for f in "${KUBE_APISERVER_BIN}" "${KUBECTL_BIN}" "${KUBE_CONTROLLER_MANAGER_BIN}" "${GATEKEEPER_BIN}"; do
    [[ -x "${f}" ]] || cluster_die "${f} was not built"
  done
  [[ -d "${GATEKEEPER_CRD_DIR}" ]] || cluster_die "${GATEKEEPER_CRD_DIR} is missing"
}

# ---------------------------------------------------------------------------------------------
# Certificates (openssl, ECDSA P-256 keys: fast to generate). Existing files are kept, so
# certificates survive restarts of `up`.

# issue_cert NAME SUBJECT EXT_KEY_USAGE [SAN]: CERT_DIR/NAME.{key,crt} signed by the local CA.
issue_cert() {
  local name="$1" subject="$2" eku="$3" san="${4:-}" ext
  [[ -s "${CERT_DIR}/${name}.crt" && -s "${CERT_DIR}/${name}.key" ]] && return 0
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=${eku}"
  [[ -n "${san}" ]] && ext+=$'\n'"subjectAltName=${san}"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "${CERT_DIR}/${name}.key" \
    -subj "${subject}" -out "${CERT_DIR}/${name}.csr" 2>/dev/null
  openssl x509 -req -in "${CERT_DIR}/${name}.csr" -CA "${CERT_DIR}/ca.crt" -CAkey "${CERT_DIR}/ca.key" \
    -CAcreateserial -days 365 -sha256 -extfile <(printf '%s\n' "${ext}") \
    -out "${CERT_DIR}/${name}.crt" 2>/dev/null
  rm -f "${CERT_DIR}/${name}.csr"
}

generate_certs() {
  mkdir -p "${CERT_DIR}" "${GATEKEEPER_CERT_DIR}"
  chmod 700 "${CERT_DIR}"
  (
    umask 077
    if [[ ! -s "${CERT_DIR}/ca.crt" || ! -s "${CERT_DIR}/ca.key" ]]; then
      cluster_log "generating certificates in ${CERT_DIR}"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -sha256 \
        -keyout "${CERT_DIR}/ca.key" -out "${CERT_DIR}/ca.crt" -subj "/CN=psc-local-ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    fi
    # kube-apiserver serving certificate: 127.0.0.1/localhost plus the in-cluster names and the
    # first IP of --service-cluster-ip-range (the "kubernetes" Service).
    issue_cert apiserver "/CN=kube-apiserver" serverAuth \
      "IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    issue_cert admin "/O=system:masters/CN=psc-admin" clientAuth
    # kube-controller-manager: the user the bootstrap RBAC policy binds to system:kube-controller-manager;
    # with --use-service-account-credentials each controller then acts as its own service account.
    issue_cert kube-controller-manager-client "/CN=system:kube-controller-manager" clientAuth
    issue_cert kube-controller-manager "/CN=kube-controller-manager" serverAuth "IP:127.0.0.1,DNS:localhost"
    # Gatekeeper's identity towards the apiserver (a cluster admin too, but distinct in audit/logs).
    issue_cert gatekeeper-client "/O=system:masters/CN=gatekeeper" clientAuth
    issue_cert gatekeeper-webhook "/CN=gatekeeper-webhook-service.${GATEKEEPER_NAMESPACE}.svc" serverAuth \
      "IP:127.0.0.1,DNS:localhost,DNS:gatekeeper-webhook-service.${GATEKEEPER_NAMESPACE}.svc"
    # Service-account token signing key pair (ES256).
    if [[ ! -s "${CERT_DIR}/sa.key" || ! -s "${CERT_DIR}/sa.pub" ]]; then
      openssl ecparam -name prime256v1 -genkey -noout -out "${CERT_DIR}/sa.key" 2>/dev/null
      openssl ec -in "${CERT_DIR}/sa.key" -pubout -out "${CERT_DIR}/sa.pub" 2>/dev/null
    fi
    # Gatekeeper reads tls.crt/tls.key (and ca.crt) from --cert-dir.
    cp "${CERT_DIR}/gatekeeper-webhook.crt" "${GATEKEEPER_CERT_DIR}/tls.crt"
    cp "${CERT_DIR}/gatekeeper-webhook.key" "${GATEKEEPER_CERT_DIR}/tls.key"
    cp "${CERT_DIR}/ca.crt" "${GATEKEEPER_CERT_DIR}/ca.crt"
  )
}

# write_kubeconfig FILE CERT_NAME USER: kubeconfig with embedded CA, client cert and key.
write_kubeconfig() {
  local file="$1" cert="$2" user="$3"
  (
    umask 077
    cat >"${file}.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: psc-local
  cluster:
    server: ${APISERVER_URL}
    certificate-authority-data: $(base64 -w0 <"${CERT_DIR}/ca.crt")
users:
- name: ${user}
  user:
    client-certificate-data: $(base64 -w0 <"${CERT_DIR}/${cert}.crt")
    client-key-data: $(base64 -w0 <"${CERT_DIR}/${cert}.key")
contexts:
- name: psc-local
  context:
    cluster: psc-local
    user: ${user}
current-context: psc-local
EOF
    mv "${file}.tmp" "${file}"
  )
}

# ---------------------------------------------------------------------------------------------
# Process management

# start_component NAME CMD...: starts CMD in its own session, logs to logs/NAME.log, pid to pids/NAME.pid.
start_component() {
  local name="$1" pid
  shift
  mkdir -p "${LOG_DIR}" "${PID_DIR}"
  printf '\n==== %s: starting %s ====\n' "$(date -u +%FT%TZ)" "${name}" >>"${LOG_DIR}/${name}.log"
  # setsid: detach from this shell's session so the process outlives this script and is not hit by
  # a Ctrl-C in the terminal that started it. It execs the command, so $! is the component's pid.
  # The subshell first closes every inherited descriptor above stderr: a daemon that kept, say,
  # the descriptor of a `flock` its caller ran under would hold that lock for as long as it runs.
  (
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if ((fd > 2)); then eval "exec ${fd}>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@" >>"${LOG_DIR}/${name}.log" 2>&1 </dev/null
  ) &
  pid=$!
  echo "${pid}" >"${PID_DIR}/${name}.pid"
  cluster_log "started ${name} (pid ${pid}, log ${LOG_DIR}/${name}.log)"
}

# wait_for NAME DESCRIPTION CMD...: polls CMD every 0.5 s for up to WAIT_TIMEOUT seconds while
# component NAME keeps running; on failure prints the tail of NAME's log and exits.
wait_for() {
  local name="$1" what="$2" deadline
  shift 2
  deadline=$((SECONDS + WAIT_TIMEOUT))
  while ! "$@" >/dev/null 2>&1; do
    if ! cluster_running_pid "${name}" >/dev/null; then
      sleep 0.3
      cluster_log_tail "${name}"
      cluster_die "${name} exited while waiting for ${what}; see ${LOG_DIR}/${name}.log"
    fi
    if ((SECONDS >= deadline)); then
      cluster_log_tail "${name}"
      cluster_die "timed out after ${WAIT_TIMEOUT}s waiting for ${what}; see ${LOG_DIR}/${name}.log (raise WAIT_TIMEOUT to wait longer)"
    fi
    sleep 0.5
  done
}

etcd_healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:${ETCD_PORT}/health" | grep -q '"health":"true"'
}

kcm_healthy() {
  curl -fsS --max-time 3 --cacert "${CERT_DIR}/ca.crt" "https://127.0.0.1:${KCM_PORT}/healthz" | grep -qx ok
}

# The serviceaccount controller has run once its "default" ServiceAccount exists in "default".
kcm_controllers_running() {
  cluster_kubectl -n default get serviceaccount default -o name
}

apiserver_healthy() {
  curl -fsS --max-time 3 --cacert "${CERT_DIR}/ca.crt" --cert "${CERT_DIR}/admin.crt" --key "${CERT_DIR}/admin.key" \
    "${APISERVER_URL}/readyz" | grep -qx ok
}

gatekeeper_ready() {
  curl -fsS --max-time 2 "http://127.0.0.1:${GATEKEEPER_HEALTH_PORT}/readyz" >/dev/null &&
    curl -fsS --max-time 2 "http://127.0.0.1:${GATEKEEPER_HEALTH_PORT}/healthz" >/dev/null
}

# gatekeeper_mutation_enabled: GATEKEEPER_OPERATIONS includes mutation-webhook.
gatekeeper_mutation_enabled() {
  [[ ",${GATEKEEPER_OPERATIONS}," == *,mutation-webhook,* ]]
}

# gatekeeper_webhook_registered: the webhook configurations the settings call for exist.
gatekeeper_webhook_registered() {
  cluster_kubectl get validatingwebhookconfiguration "${GATEKEEPER_VWH_NAME}" >/dev/null 2>&1 || return 1
  if gatekeeper_mutation_enabled; then
    cluster_kubectl get mutatingwebhookconfiguration "${GATEKEEPER_MWH_NAME}" >/dev/null 2>&1 || return 1
  fi
}

gatekeeper_any_webhook_registered() {
  cluster_kubectl get validatingwebhookconfiguration "${GATEKEEPER_VWH_NAME}" >/dev/null 2>&1 ||
    cluster_kubectl get mutatingwebhookconfiguration "${GATEKEEPER_MWH_NAME}" >/dev/null 2>&1
}

# delete_gatekeeper_webhooks: unregisters both webhook configurations (absent ones are fine).
delete_gatekeeper_webhooks() {
  cluster_kubectl delete validatingwebhookconfiguration "${GATEKEEPER_VWH_NAME}" --ignore-not-found >/dev/null
  cluster_kubectl delete mutatingwebhookconfiguration "${GATEKEEPER_MWH_NAME}" --ignore-not-found >/dev/null
}

# The check-ignore-label webhook has failurePolicy Fail, so a server-side dry-run namespace
# creation succeeds only if the apiserver really reached Gatekeeper over TLS (URL, CA, port).
gatekeeper_admits() {
  cluster_kubectl create namespace psc-gatekeeper-probe --dry-run=server -o name
}

start_etcd() {
  mkdir -p "${ETCD_DATA_DIR}"
  chmod 700 "${ETCD_DATA_DIR}"
  start_component etcd "${ETCD_BIN}" \
    --name=psc-local \
    --data-dir="${ETCD_DATA_DIR}" \
    --listen-client-urls="http://127.0.0.1:${ETCD_PORT}" \
    --advertise-client-urls="http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster="psc-local=http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster-state=new \
    --logger=zap --log-outputs=stderr
  wait_for etcd "etcd health on 127.0.0.1:${ETCD_PORT}" etcd_healthy
  cluster_log "etcd is healthy on 127.0.0.1:${ETCD_PORT}"
}

start_apiserver() {
  # The default admission plugins (ServiceAccount included: kube-controller-manager creates every
  # namespace's "default" ServiceAccount).
  start_component kube-apiserver "${KUBE_APISERVER_BIN}" \
    --etcd-servers="http://127.0.0.1:${ETCD_PORT}" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="${APISERVER_PORT}" \
    --cert-dir="${CERT_DIR}" \
    --tls-cert-file="${CERT_DIR}/apiserver.crt" \
    --tls-private-key-file="${CERT_DIR}/apiserver.key" \
    --client-ca-file="${CERT_DIR}/ca.crt" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="${CERT_DIR}/sa.pub" \
    --service-account-signing-key-file="${CERT_DIR}/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --profiling=false
  wait_for kube-apiserver "kube-apiserver /readyz on ${APISERVER_URL}" apiserver_healthy
  cluster_log "kube-apiserver is ready on ${APISERVER_URL}"
}

start_kcm() {
  # --use-service-account-credentials: each controller gets its own service account and RBAC role
  # (system:controller:*), as kubeadm runs it. --service-account-private-key-file: the key the
  # apiserver verifies (sa.pub), for Secret-based tokens. --root-ca-file: the CA put into every
  # namespace's kube-root-ca.crt ConfigMap. --leader-elect=false: a single instance.
  start_component kube-controller-manager "${KUBE_CONTROLLER_MANAGER_BIN}" \
    --kubeconfig="${KCM_KUBECONFIG}" \
    --authentication-kubeconfig="${KCM_KUBECONFIG}" \
    --authorization-kubeconfig="${KCM_KUBECONFIG}" \
    --bind-address=127.0.0.1 \
    --secure-port="${KCM_PORT}" \
    --tls-cert-file="${CERT_DIR}/kube-controller-manager.crt" \
    --tls-private-key-file="${CERT_DIR}/kube-controller-manager.key" \
    --client-ca-file="${CERT_DIR}/ca.crt" \
    --controllers="${KCM_CONTROLLERS}" \
    --use-service-account-credentials=true \
    --service-account-private-key-file="${CERT_DIR}/sa.key" \
    --root-ca-file="${CERT_DIR}/ca.crt" \
    --leader-elect=false \
    --profiling=false
  wait_for kube-controller-manager "kube-controller-manager /healthz on https://127.0.0.1:${KCM_PORT}" kcm_healthy
  wait_for kube-controller-manager "the ServiceAccount default/default (serviceaccount controller)" kcm_controllers_running
  cluster_log "kube-controller-manager is running (https://127.0.0.1:${KCM_PORT}/healthz)"
}

# ---------------------------------------------------------------------------------------------
# Gatekeeper

require_apiserver() {
  if ! cluster_running_pid kube-apiserver >/dev/null || ! apiserver_healthy; then
    cluster_die "the local cluster is not up; run hack/cluster-up.sh first"
  fi
}

install_gatekeeper_crds() {
  cluster_log "installing Gatekeeper ${GATEKEEPER_VERSION} CRDs and namespace ${GATEKEEPER_NAMESPACE}"
  cluster_kubectl apply --server-side --force-conflicts --field-manager=psc-cluster-up \
    -f "${GATEKEEPER_CRD_DIR}" >/dev/null
  # As the chart's post-install job does: Gatekeeper does not police its own namespace.
  cluster_kubectl apply --server-side --force-conflicts --field-manager=psc-cluster-up -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: ${GATEKEEPER_NAMESPACE}
  labels:
    admission.gatekeeper.sh/ignore: no-self-managing
EOF
  cluster_kubectl wait --for=condition=Established --timeout="${WAIT_TIMEOUT}s" -f "${GATEKEEPER_CRD_DIR}" >/dev/null ||
    cluster_die "Gatekeeper CRDs did not become Established within ${WAIT_TIMEOUT}s"
  cluster_log "Gatekeeper CRDs are Established (constrainttemplates.templates.gatekeeper.sh and others)"
}

gatekeeper_crds_installed() {
  cluster_kubectl get crd constrainttemplates.templates.gatekeeper.sh \
    -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null | grep -qx True
}

# Gatekeeper writes one status object per pod (*podstatuses.status.gatekeeper.sh) with an
# ownerReference to the Pod it runs in. Outside a pod, --debug-use-fake-pod makes that a Pod that
# does not exist (no-pod, uid abcd), and the garbage collector deletes every such status object
# at once, so templates and constraints never report byPod status. Instead a placeholder Pod
# stands for the local process: Gatekeeper reads it by POD_NAME and owns its status objects by its
# real uid. It stays Pending (no scheduler) and is kept across Gatekeeper restarts, so status
# objects survive them.
gatekeeper_pod_manifest() {
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: ${GATEKEEPER_POD_NAME}
  namespace: ${GATEKEEPER_NAMESPACE}
  labels:
    app.kubernetes.io/name: gatekeeper
    app.kubernetes.io/managed-by: psc-operator-hack-cluster-up
  annotations:
    psc.local/purpose: "stands for the Gatekeeper process hack/cluster-up.sh runs on the host (owner of its status objects); never scheduled"
spec:
  automountServiceAccountToken: false
  containers:
  - name: manager
    image: openpolicyagent/gatekeeper:${GATEKEEPER_VERSION}
EOF
}

apply_gatekeeper_pod() {
  gatekeeper_pod_manifest |
    cluster_kubectl apply --server-side --force-conflicts --field-manager=psc-cluster-up -f - >/dev/null
}

ensure_gatekeeper_pod() {
  cluster_kubectl -n "${GATEKEEPER_NAMESPACE}" get pod "${GATEKEEPER_POD_NAME}" >/dev/null 2>&1 && return 0
  # The ServiceAccount admission plugin needs the namespace's "default" ServiceAccount, which
  # kube-controller-manager creates shortly after the namespace.
  wait_for kube-controller-manager "Pod ${GATEKEEPER_NAMESPACE}/${GATEKEEPER_POD_NAME} (the ServiceAccount admission plugin waits for kube-controller-manager)" apply_gatekeeper_pod
}

start_gatekeeper() {
  local metrics_flags extra_flags=()
  ensure_gatekeeper_pod
  mkdir -p "${GATEKEEPER_STATE_DIR}/audit-cache"
  if [[ "${GATEKEEPER_METRICS}" == prometheus ]]; then
    # Gatekeeper's Prometheus exporter has no bind-address flag: it listens on all interfaces.
    metrics_flags=(--metrics-backend=prometheus --prometheus-port="${GATEKEEPER_METRICS_PORT}")
  else
    # Gatekeeper always starts a metrics exporter, and the default (Prometheus) binds 0.0.0.0.
    # Instead use the OTLP exporter pointed at a loopback port with a push interval of ten years:
    # it is created lazily, never pushes and never listens, so nothing leaves 127.0.0.1.
    metrics_flags=(--metrics-backend=opentelemetry --otlp-endpoint="127.0.0.1:${GATEKEEPER_METRICS_PORT}"
      --otlp-metric-interval=87600h)
  fi
  # GATEKEEPER_EXTRA_ARGS: split on whitespace, appended last (so a flag given there wins over ours).
  read -r -a extra_flags <<<"${GATEKEEPER_EXTRA_ARGS}"
  ((${#extra_flags[@]} == 0)) || cluster_log "Gatekeeper extra flags: ${extra_flags[*]}"
  # --operation: one process does what the chart splits over two Deployments: webhook (admission),
  # audit, status (byPod status of templates/constraints) and generate (without which no constraint
  # CRD is ever created from a ConstraintTemplate: "no matches for kind" forever), and, as the chart's
  # defaults, mutation-webhook (/v1/mutate) and mutation-status (byPod status of mutators).
  # --log-mutations: every mutation Gatekeeper applies is logged (bin/local/logs/gatekeeper.log).
  # POD_NAME: the placeholder Pod above (instead of --debug-use-fake-pod).
  # POD_NAMESPACE: where Gatekeeper writes its *podstatuses objects and reads its Config.
  # --shutdown-delay=0: there is no Service endpoint to drain, so stop at once on SIGTERM.
  # --default-create-vap-*: left at Gatekeeper's (and its chart's) defaults, which users run; the
  # operator's templates and constraints say explicitly whether a ValidatingAdmissionPolicy and
  # binding are generated (spec.validatingAdmissionPolicy).
  # --audit-from-cache=false: audit lists every resource (Pods included) from the apiserver via
  # discovery, so it needs no sync Config.
  POD_NAME="${GATEKEEPER_POD_NAME}" POD_NAMESPACE="${GATEKEEPER_NAMESPACE}" start_component gatekeeper "${GATEKEEPER_BIN}" \
    --kubeconfig="${GATEKEEPER_KUBECONFIG}" \
    --disable-cert-rotation \
    --cert-dir="${GATEKEEPER_CERT_DIR}" \
    --host=127.0.0.1 \
    --port="${GATEKEEPER_PORT}" \
    --health-addr="127.0.0.1:${GATEKEEPER_HEALTH_PORT}" \
    --metrics-addr=0 \
    "${metrics_flags[@]}" \
    --operation="${GATEKEEPER_OPERATIONS}" \
    --audit-interval="${GATEKEEPER_AUDIT_INTERVAL}" \
    --audit-from-cache=false \
    --constraint-violations-limit=20 \
    --api-cache-dir="${GATEKEEPER_STATE_DIR}/audit-cache" \
    --exempt-namespace="${GATEKEEPER_NAMESPACE}" \
    --log-denies=true \
    --log-mutations=true \
    --shutdown-delay=0 \
    "${extra_flags[@]}"
  wait_for gatekeeper "Gatekeeper /readyz and /healthz on 127.0.0.1:${GATEKEEPER_HEALTH_PORT}" gatekeeper_ready
  cluster_log "Gatekeeper is ready (webhook https://127.0.0.1:${GATEKEEPER_PORT})"
}

# render_webhook TEMPLATE NAME FAILURE_POLICY: the template with its placeholders filled in.
render_webhook() {
  local ca
  ca="$(base64 -w0 <"${CERT_DIR}/ca.crt")"
  sed -e "s|@NAME@|$2|g" \
    -e "s|@URL@|${GATEKEEPER_WEBHOOK_URL}|g" \
    -e "s|@CA_BUNDLE@|${ca}|g" \
    -e "s|@NAMESPACE@|${GATEKEEPER_NAMESPACE}|g" \
    -e "s|@FAILURE_POLICY@|$3|g" \
    "$1"
}

register_gatekeeper_webhooks() {
  render_webhook "${WEBHOOK_TEMPLATE}" "${GATEKEEPER_VWH_NAME}" "${GATEKEEPER_FAILURE_POLICY}" |
    cluster_kubectl apply --server-side --force-conflicts --field-manager=psc-cluster-up -f - >/dev/null
  if gatekeeper_mutation_enabled; then
    render_webhook "${MUTATING_WEBHOOK_TEMPLATE}" "${GATEKEEPER_MWH_NAME}" "${GATEKEEPER_MUTATION_FAILURE_POLICY}" |
      cluster_kubectl apply --server-side --force-conflicts --field-manager=psc-cluster-up -f - >/dev/null
  else
    # Gatekeeper without mutation: a webhook left from an earlier run would only time out or 404.
    cluster_kubectl delete mutatingwebhookconfiguration "${GATEKEEPER_MWH_NAME}" --ignore-not-found >/dev/null
  fi
  wait_for gatekeeper "the apiserver to reach Gatekeeper's webhook (server-side dry-run)" gatekeeper_admits
  if gatekeeper_mutation_enabled; then
    cluster_log "ValidatingWebhookConfiguration ${GATEKEEPER_VWH_NAME} and MutatingWebhookConfiguration ${GATEKEEPER_MWH_NAME} registered; the apiserver reaches Gatekeeper"
  else
    cluster_log "ValidatingWebhookConfiguration ${GATEKEEPER_VWH_NAME} registered (no mutation: GATEKEEPER_OPERATIONS has no mutation-webhook); the apiserver reaches Gatekeeper"
  fi
}

# ensure_gatekeeper: CRDs, process, webhooks — each only if missing.
ensure_gatekeeper() {
  gatekeeper_crds_installed || install_gatekeeper_crds
  if cluster_running_pid gatekeeper >/dev/null; then
    wait_for gatekeeper "Gatekeeper /readyz and /healthz on 127.0.0.1:${GATEKEEPER_HEALTH_PORT}" gatekeeper_ready
  else
    cluster_check_ports "${GATEKEEPER_PORT}:GATEKEEPER_PORT:Gatekeeper webhook" \
      "${GATEKEEPER_HEALTH_PORT}:GATEKEEPER_HEALTH_PORT:Gatekeeper health"
    [[ "${GATEKEEPER_METRICS}" != prometheus ]] ||
      cluster_check_ports "${GATEKEEPER_METRICS_PORT}:GATEKEEPER_METRICS_PORT:Gatekeeper metrics"
    start_gatekeeper
  fi
  register_gatekeeper_webhooks
}

stop_gatekeeper() {
  if cluster_running_pid kube-apiserver >/dev/null && [[ -s "${ADMIN_KUBECONFIG}" ]]; then
    # First the webhook configurations, so the apiserver stops calling a Gatekeeper that is going
    # away (its check-ignore-label webhook fails closed).
    delete_gatekeeper_webhooks
  fi
  cluster_stop_component gatekeeper
}

delete_gatekeeper_crds() {
  local generated
  cluster_log "deleting Gatekeeper's CRDs (all templates, constraints and statuses go with them)"
  # The constraint CRDs generated from templates are owned by their templates, but the garbage
  # collector removes them only eventually (and not at all when its controller is not in
  # KCM_CONTROLLERS): delete them explicitly so the command's result is immediate.
  generated="$(cluster_kubectl get crd -o name | grep '\.constraints\.gatekeeper\.sh$' || true)"
  if [[ -n "${generated}" ]]; then
    # shellcheck disable=SC2086
    cluster_kubectl delete ${generated} --ignore-not-found --timeout="${WAIT_TIMEOUT}s" >/dev/null
  fi
  cluster_kubectl delete -f "${GATEKEEPER_CRD_DIR}" --ignore-not-found --timeout="${WAIT_TIMEOUT}s" >/dev/null
  cluster_log "Gatekeeper CRDs deleted"
}

# ---------------------------------------------------------------------------------------------
# Commands

print_usage_info() {
  cat <<EOF
[cluster] Local control plane is up (took $(elapsed)s).
[cluster]   export KUBECONFIG=${ADMIN_KUBECONFIG}
[cluster]   kubectl: ${KUBECTL_BIN}
[cluster]   kube-apiserver: ${APISERVER_URL}   etcd: http://127.0.0.1:${ETCD_PORT}
[cluster]   kube-controller-manager: https://127.0.0.1:${KCM_PORT}/healthz (Pods stay Pending: no scheduler, no kubelet)
EOF
  if cluster_running_pid gatekeeper >/dev/null; then
    cat <<EOF
[cluster]   Gatekeeper ${GATEKEEPER_VERSION}: webhook ${GATEKEEPER_WEBHOOK_URL}/v1/admit$(gatekeeper_mutation_enabled && echo " and /v1/mutate"), health http://127.0.0.1:${GATEKEEPER_HEALTH_PORT}/readyz, audit every ${GATEKEEPER_AUDIT_INTERVAL}s
EOF
  else
    echo "[cluster]   Gatekeeper: not running (start it with: hack/cluster-up.sh gatekeeper-start)"
  fi
  cat <<EOF
[cluster]   logs: ${LOG_DIR}/*.log   stop: hack/cluster-down.sh
EOF
}

cmd_up() {
  local want_gk=1 etcd_up=0 api_up=0 kcm_up=0 gk_up=0 ports=()
  [[ "${GATEKEEPER:-1}" == 0 ]] && want_gk=0
  ensure_prerequisites

  cluster_running_pid etcd >/dev/null && etcd_up=1
  cluster_running_pid kube-apiserver >/dev/null && api_up=1
  cluster_running_pid kube-controller-manager >/dev/null && kcm_up=1
  cluster_running_pid gatekeeper >/dev/null && gk_up=1

  if ((etcd_up && api_up && kcm_up)) && apiserver_healthy && kcm_healthy; then
    if ((want_gk == 0)) || { ((gk_up)) && gatekeeper_ready && gatekeeper_webhook_registered; }; then
      cluster_log "local cluster is already up (nothing to do)"
      if ((want_gk == 0 && gk_up)); then
        cluster_log "note: Gatekeeper is running; stop it with: hack/cluster-up.sh gatekeeper-stop"
      fi
      print_usage_info
      return 0
    fi
  fi

  # Check every port we are about to listen on before starting anything.
  ((etcd_up)) || ports+=("${ETCD_PORT}:ETCD_PORT:etcd client" "${ETCD_PEER_PORT}:ETCD_PEER_PORT:etcd peer")
  ((api_up)) || ports+=("${APISERVER_PORT}:APISERVER_PORT:kube-apiserver")
  ((kcm_up)) || ports+=("${KCM_PORT}:KCM_PORT:kube-controller-manager")
  if ((want_gk && !gk_up)); then
    ports+=("${GATEKEEPER_PORT}:GATEKEEPER_PORT:Gatekeeper webhook"
      "${GATEKEEPER_HEALTH_PORT}:GATEKEEPER_HEALTH_PORT:Gatekeeper health")
    [[ "${GATEKEEPER_METRICS}" != prometheus ]] ||
      ports+=("${GATEKEEPER_METRICS_PORT}:GATEKEEPER_METRICS_PORT:Gatekeeper metrics")
  fi
  ((${#ports[@]} == 0)) || cluster_check_ports "${ports[@]}"

  mkdir -p "${LOCAL_DIR}" "${LOG_DIR}" "${PID_DIR}"
  generate_certs
  write_kubeconfig "${ADMIN_KUBECONFIG}" admin psc-admin
  write_kubeconfig "${GATEKEEPER_KUBECONFIG}" gatekeeper-client gatekeeper
  write_kubeconfig "${KCM_KUBECONFIG}" kube-controller-manager-client system:kube-controller-manager

  if ((etcd_up)); then
    wait_for etcd "etcd health on 127.0.0.1:${ETCD_PORT}" etcd_healthy
  else
    start_etcd
  fi
  if ((api_up)); then
    wait_for kube-apiserver "kube-apiserver /readyz on ${APISERVER_URL}" apiserver_healthy
  else
    start_apiserver
  fi
  if ((kcm_up)); then
    wait_for kube-controller-manager "kube-controller-manager /healthz on https://127.0.0.1:${KCM_PORT}" kcm_healthy
  else
    start_kcm
  fi
  if ((want_gk)); then
    ensure_gatekeeper
  elif ! cluster_running_pid gatekeeper >/dev/null && gatekeeper_any_webhook_registered; then
    # Left over from an earlier run whose processes died (e.g. a reboot): a webhook configuration
    # pointing at a Gatekeeper that is not running would make namespace changes fail.
    cluster_log "Gatekeeper is not running: removing its stale webhook configurations"
    delete_gatekeeper_webhooks
  fi
  print_usage_info
}

cmd_status() {
  local name pid rc=0
  for name in etcd kube-apiserver kube-controller-manager gatekeeper; do
    if pid="$(cluster_running_pid "${name}")"; then
      cluster_log "${name}: running (pid ${pid})"
    else
      cluster_log "${name}: not running"
      [[ "${name}" == gatekeeper ]] || rc=1
    fi
  done
  if ((rc == 0)) && apiserver_healthy; then
    cluster_log "kube-apiserver ${APISERVER_URL}: ready; KUBECONFIG=${ADMIN_KUBECONFIG}"
    if gatekeeper_crds_installed; then cluster_log "Gatekeeper CRDs: installed"; else cluster_log "Gatekeeper CRDs: not installed"; fi
    if gatekeeper_webhook_registered; then cluster_log "Gatekeeper webhooks: registered"; else cluster_log "Gatekeeper webhooks: not (all) registered"; fi
  fi
  return "${rc}"
}

main() {
  local cmd="${1:-up}"
  case "${cmd}" in
    up) cmd_up ;;
    gatekeeper-crds)
      ensure_prerequisites
      require_apiserver
      install_gatekeeper_crds
      ;;
    gatekeeper-start)
      ensure_prerequisites
      require_apiserver
      ensure_gatekeeper
      cluster_log "Gatekeeper is up (took $(elapsed)s)"
      ;;
    gatekeeper-stop)
      stop_gatekeeper
      cluster_log "Gatekeeper is stopped and its webhook configuration removed"
      ;;
    gatekeeper-crds-delete)
      require_apiserver
      stop_gatekeeper
      delete_gatekeeper_crds
      ;;
    status) cmd_status ;;
    -h | --help | help) sed -n '2,/^set -euo pipefail/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
    *) cluster_die "unknown command '${cmd}' (try: up, gatekeeper-crds, gatekeeper-start, gatekeeper-stop, gatekeeper-crds-delete, status, help)" ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
