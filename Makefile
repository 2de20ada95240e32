# psc-operator. `make help` lists the targets.

KUBE_VERSION       ?= v1.36.2
GATEKEEPER_VERSION ?= v3.23.1
CONTROLLER_TOOLS_VERSION ?= v0.23.0

BIN        := $(CURDIR)/bin
KUBE_BIN   := $(BIN)/k8s/$(KUBE_VERSION)
GK_BIN     := $(BIN)/gatekeeper/$(GATEKEEPER_VERSION)
CONTROLLER_GEN := $(BIN)/tools/controller-tools-$(CONTROLLER_TOOLS_VERSION)/controller-gen
KUBECTL    := $(KUBE_BIN)/kubectl
KUBECONFIG ?= $(BIN)/local/kubeconfig
export KUBE_VERSION GATEKEEPER_VERSION

GO_TEST_FLAGS ?= -count=1 -timeout 30m
E2E_TIMEOUT   ?= 40m

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC under config/.
	$(CONTROLLER_GEN) rbac:roleName=psc-operator crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

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
build: ## Build the manager binary into bin/manager.
	go build -o $(BIN)/manager .

##@ Test

.PHONY: test
test: test-assets ## Run unit, policy and envtest (real kube-apiserver + etcd) tests.
	KUBEBUILDER_ASSETS=$(KUBE_BIN) go test $(GO_TEST_FLAGS) ./...

.PHONY: test-assets
test-assets: ## Build/install kube-apiserver, kubectl and etcd for envtest into bin/ (cached).
	@hack/test-assets.sh

.PHONY: bench
bench: ## Benchmark policy evaluation (per-review latency, Rego engine).
	go test -run '^$$' -bench . -benchmem -count=$${BENCH_COUNT:-5} ./templates/...

.PHONY: test-e2e
test-e2e: test-assets build ## End-to-end tests against a local cluster with real Gatekeeper.
	hack/cluster-up.sh
	KUBECONFIG=$(KUBECONFIG) PSC_KUBECTL=$(KUBECTL) PSC_MANAGER=$(BIN)/manager PSC_GATOR=$(GK_BIN)/gator go test -count=1 -timeout $(E2E_TIMEOUT) -tags e2e -v ./e2e/... ; rc=$$?; \
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
install: manifests ## Apply the CRD to the current kubeconfig.
	$(KUBECTL) --kubeconfig=$(KUBECONFIG) apply --server-side -k config/crd

.PHONY: deploy
deploy: manifests ## Apply CRD, RBAC and the manager Deployment (config/default).
	$(KUBECTL) --kubeconfig=$(KUBECONFIG) apply --server-side -k config/default

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	GOBIN=$(dir $(CONTROLLER_GEN)) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
