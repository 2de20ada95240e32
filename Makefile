# psc-operator. `make help` lists the targets.

KUBE_VERSION       ?= v1.36.2
# The oldest Kubernetes the README claims; make test-envtest-oldest runs envtest against it.
KUBE_VERSION_OLDEST ?= v1.30.14
GATEKEEPER_VERSION ?= v3.23.1
CONTROLLER_TOOLS_VERSION ?= v0.23.0

BIN        := $(CURDIR)/bin
KUBE_BIN   := $(BIN)/k8s/$(KUBE_VERSION)
GK_BIN     := $(BIN)/gatekeeper/$(GATEKEEPER_VERSION)
CONTROLLER_GEN := $(BIN)/tools/controller-tools-$(CONTROLLER_TOOLS_VERSION)/controller-gen
HELM_VERSION   ?= v3.22.0
HELM           := $(BIN)/tools/helm-$(HELM_VERSION)/helm
CHART          := charts/psc-operator

IMAGE_REPO   ?= ghcr.io/podsecurity/psc-operator
IMAGE_TAG    ?= v0.1.0
IMAGE_ARCH   ?= $(shell go env GOARCH)
IMAGE_DIR    := $(BIN)/image
IMAGE_BINARY := $(IMAGE_DIR)/manager-linux-$(IMAGE_ARCH)
# Reproducible: every timestamp in the image is the last commit's.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
KUBECTL    := $(KUBE_BIN)/kubectl
KUBECONFIG ?= $(BIN)/local/kubeconfig
export KUBE_VERSION GATEKEEPER_VERSION

GO_TEST_FLAGS ?= -count=1 -timeout 30m
# envtest waits 20 s for kube-apiserver by default; on a loaded 2-core machine it can need more.
KUBEBUILDER_CONTROLPLANE_START_TIMEOUT ?= 120s
KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT  ?= 60s
export KUBEBUILDER_CONTROLPLANE_START_TIMEOUT KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT
E2E_TIMEOUT   ?= 40m

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC under config/, and sync them into the Helm chart.
	$(CONTROLLER_GEN) rbac:roleName=psc-operator crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(MAKE) --no-print-directory chart-sync

.PHONY: chart-sync
chart-sync: ## Copy the generated CRDs, ClusterRole rules and Argo CD health check into the chart.
	rm -f $(CHART)/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/role.yaml
	cp config/argocd/health.lua $(CHART)/files/health.lua

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## gofmt the code.
	gofmt -l -w $$(git ls-files '*.go' | grep -v '^bin/')

.PHONY: vet
vet: ## go vet the code.
	go vet ./...

.PHONY: build
build: ## Build the manager into bin/manager and the offline CLI (psc render, psc convert-psp) into bin/psc.
	go build -o $(BIN)/manager .
	go build -o $(BIN)/psc ./cmd/psc

.PHONY: image
image: ## Build the OCI image (static binary, non-root, no container engine) into bin/image/oci.
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -trimpath -ldflags="-s -w -buildid=" -o $(IMAGE_BINARY) .
	cd hack/image && go run . --binary $(IMAGE_BINARY) --out $(IMAGE_DIR)/oci --repository $(IMAGE_REPO) --tag $(IMAGE_TAG) \
	  --arch $(IMAGE_ARCH) --revision $$(git rev-parse HEAD 2>/dev/null || echo unknown)

##@ Test

.PHONY: test
test: test-assets helm test-chart test-image ## Run unit, policy, chart and envtest (real kube-apiserver + etcd) tests.
	KUBEBUILDER_ASSETS=$(KUBE_BIN) PSC_HELM=$(HELM) go test $(GO_TEST_FLAGS) ./...

.PHONY: test-image
test-image: image ## Inspect the image: config, files, the binary runs --help, rebuild gives the same digest.
	cd hack/image && PSC_IMAGE_LAYOUT=$(IMAGE_DIR)/oci PSC_IMAGE_BINARY=$(IMAGE_BINARY) go test $(GO_TEST_FLAGS) ./...

.PHONY: test-chart
test-chart: helm ## helm lint and helm template the chart (the Go test compares it with config/default).
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set namespace.create=true --set argocd.healthCheck.enabled=true --set leaderElection.enabled=false
	$(HELM) lint --strict $(CHART) --set admissionProbe.enabled=false --set admissionProbe.interval=30s
	$(HELM) template psc-operator $(CHART) --namespace psc-system --include-crds --kube-version $(KUBE_VERSION) >/dev/null
	$(HELM) template psc-operator $(CHART) --namespace psc-system --kube-version v1.30.0 --set argocd.healthCheck.enabled=true >/dev/null

# Packages whose tests start a kube-apiserver (envtest).
ENVTEST_PACKAGES ?= . ./api/... ./controllers/...

.PHONY: test-envtest-oldest
test-envtest-oldest: ## Run the envtest suites against the oldest Kubernetes supported (KUBE_VERSION_OLDEST).
	KUBE_VERSION=$(KUBE_VERSION_OLDEST) hack/test-assets.sh
	KUBEBUILDER_ASSETS=$(BIN)/k8s/$(KUBE_VERSION_OLDEST) go test $(GO_TEST_FLAGS) $(ENVTEST_PACKAGES)

.PHONY: test-assets
test-assets: ## Build/install kube-apiserver, kubectl and etcd for envtest into bin/ (cached).
	@hack/test-assets.sh

.PHONY: bench
bench: ## Benchmark policy evaluation (Go benchmarks and gator bench; gatekeeper-library side by side when PSC_GATEKEEPER_LIBRARY is set).
	hack/bench.sh

.PHONY: bench-operator
bench-operator: test-assets ## The operator's steady-state cost and apply latency on the local cluster (its own metrics), against issue 13's targets.
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o $(BIN)/manager-bench .
	BENCH_MANAGER=$(BIN)/manager-bench hack/bench-operator.sh

FUZZ_ENGINES_CASES ?= 100000

.PHONY: fuzz-engines
fuzz-engines: ## Differential test of the CEL and Rego code on FUZZ_ENGINES_CASES random requests (PSC_ENGINE_SEED to replay).
	PSC_ENGINE_CASES=$(FUZZ_ENGINES_CASES) go test -count=1 -timeout 0 -run '^TestEnginesAgree$$' -v ./templates/

# E2E_RUN narrows the first pass (go test -run; empty: every test), e.g.
# make test-e2e E2E_RUN='^TestPolicyLayout$$' E2E_REGO_RUN='^TestEngine$$'.
E2E_RUN ?=
# The scenarios run again with Gatekeeper evaluating Rego only (--enable-k8s-native-validation=false).
E2E_REGO_RUN ?= ^(TestEngine|TestFeatures|TestExclusions|TestExemptImagesInSharedConstraint|TestEphemeralContainers|TestUpdatesOfExistingPods)$$
E2E_ENV = KUBECONFIG=$(KUBECONFIG) PSC_HELM=$(HELM) PSC_KUBECTL=$(KUBECTL) PSC_CLI=$(BIN)/psc PSC_GATOR=$(GK_BIN)/gator

.PHONY: test-e2e
test-e2e: test-assets build helm ## End-to-end tests against a local cluster with real Gatekeeper: all on its default engine (CEL), the policy scenarios again with Rego forced.
	hack/cluster-up.sh
	$(E2E_ENV) PSC_E2E_ENGINE=cel go test -count=1 -timeout $(E2E_TIMEOUT) -tags e2e -v -run '$(E2E_RUN)' ./e2e/... ; rc=$$?; \
	  if [ $$rc = 0 ]; then \
	    hack/cluster-up.sh gatekeeper-stop && \
	    GATEKEEPER_EXTRA_ARGS=--enable-k8s-native-validation=false hack/cluster-up.sh gatekeeper-start && \
	    $(E2E_ENV) PSC_E2E_ENGINE=rego go test -count=1 -timeout $(E2E_TIMEOUT) -tags e2e -v -run '$(E2E_REGO_RUN)' ./e2e/... ; rc=$$?; \
	  fi; \
	  [ "$(KEEP)" = "1" ] || hack/cluster-down.sh; exit $$rc

##@ Local cluster

.PHONY: cluster-up
cluster-up: ## Start etcd, kube-apiserver and Gatekeeper on loopback; kubeconfig in bin/local/.
	hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove its state.
	hack/cluster-down.sh

.PHONY: demo
demo: build ## Local cluster + operator + sample CR: show a denied and an admitted pod.
	hack/demo.sh

.PHONY: run
run: ## Run the operator against the current kubeconfig.
	go run . --kubeconfig=$(KUBECONFIG) --leader-elect=false

.PHONY: install
install: manifests ## Apply the CRD and the admission probe's namespace (config/probe) to the current kubeconfig.
	$(KUBECTL) --kubeconfig=$(KUBECONFIG) apply --server-side -k config/crd
	$(KUBECTL) --kubeconfig=$(KUBECONFIG) apply --server-side -k config/probe

.PHONY: deploy
deploy: manifests ## Apply CRD, RBAC and the manager Deployment (config/default).
	$(KUBECTL) --kubeconfig=$(KUBECONFIG) apply --server-side -k config/default

##@ Tools

.PHONY: helm
helm: $(HELM) ## Build helm from its Go module into bin/tools.
$(HELM):
	GOBIN=$(dir $(HELM)) CGO_ENABLED=0 go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	GOBIN=$(dir $(CONTROLLER_GEN)) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
