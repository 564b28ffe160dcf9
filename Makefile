# berth: a Kubernetes CRI runtime. `sudo make run` builds and runs the agent;
# `sudo make test` sets up and runs every test. Both install what they need.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN       := bin
# libcontainer's seccomp support is behind the seccomp tag and needs cgo + libseccomp.
TAGS      := seccomp
LDFLAGS   := -X main.version=$(VERSION) -X github.com/berth-runtime/berth/pkg/cri/server.Version=$(VERSION)
GOTEST    := $(GO) test -tags $(TAGS) -count=1

.PHONY: all deps build run test unit e2e kubelet-e2e leaks critest critest-bench bench chaos chaos-short clean

all: build

deps:
	hack/deps.sh

build:
	$(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/berth ./cmd/agent
	$(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/berth-shim ./cmd/shim

# run: the agent in the foreground with the default config (/etc/berth/config.toml if present).
run: deps build
	$(BIN)/berth

# test: unit tests, then the e2e tests against a real agent, then a leak check.
test: deps build unit e2e kubelet-e2e critest leaks

unit:
	$(GO) vet -tags $(TAGS) ./...
	$(GOTEST) ./cmd/... ./pkg/... ./test/fixture/... ./hack/...

E2E_ENV := BERTH_BIN=$(CURDIR)/$(BIN)/berth BERTH_SHIM_BIN=$(CURDIR)/$(BIN)/berth-shim

e2e: build
	$(E2E_ENV) $(GOTEST) -timeout 20m ./test/e2e/

# kubelet-e2e: a standalone kubelet (built from k8s.io/kubernetes by hack/kubelet.sh) runs static pods on berth.
kubelet-e2e: build
	hack/kubelet.sh
	$(E2E_ENV) $(GOTEST) -timeout 20m -v ./test/e2e/kubelet/

leaks:
	hack/check-leaks.sh

# critest: the CRI conformance suite, offline (images served from 127.0.0.1 through registry mirrors).
critest: build
	hack/critest.sh

critest-bench: build
	hack/critest.sh --benchmark

# bench: pull+unpack throughput and RunPodSandbox latency, medians with same-run references.
bench: build
	hack/bench-pull.sh
	hack/bench-runp.sh

# chaos: kill the agent, shims and CNI plugins (>= 200 agent kills) and inject faults under a
# churn of pods, then check that nothing was lost and nothing is left. chaos-short: ~12 kills, for CI.
chaos: build
	$(E2E_ENV) $(GO) run ./hack/chaos

chaos-short: build
	$(E2E_ENV) $(GO) run ./hack/chaos --short

clean:
	rm -rf $(BIN)
