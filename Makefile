# berth: a Kubernetes CRI runtime. `make run` (as root) builds and runs the agent;
# `make test` (as root) sets up and runs every test. Both install what they need.

GO        ?= go
# A semantic version: the kubelet reports a runtime version it cannot parse as "Unknown" in the
# Node's status. Without a tag, v0.0.0-g<commit>[-dirty].
GITDESC   := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION   ?= $(if $(filter v%,$(GITDESC)),$(GITDESC),v0.0.0-g$(GITDESC))
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
	@# The pod init is a small static C program: no Go runtime per pod (cmd/pod-init).
	$(CC) -static -Os -s -Wall -Wextra -Werror -o $(BIN)/berth-pod-init cmd/pod-init/pod_init.c

# run: the agent in the foreground with the default config (/etc/berth/config.toml if present).
run: deps build
	$(BIN)/berth

# test: unit tests, the e2e tests against a real agent, the kubelet scenarios, the cluster
# scenarios (a control plane and kubectl on berth), critest, a short chaos run and a short pass of
# every fuzz target, then in the VM (cgroup v2, systemd): the layout, AppArmor and systemd checks
# and the suites' v2 subset; last, a leak check. The long runs are `make chaos`, `make fuzz` and
# `make vm-test-full`.
test: deps build unit e2e kubelet-e2e cluster-e2e critest chaos-short fuzz-short vm-smoke vm-subset leaks

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

# cluster-up: a single-node Kubernetes v1.37.2 cluster on a berth agent of its own (etcd, control
# plane, kubelet, kube-proxy in iptables mode, a test registry behind registry.k8s.io/docker.io
# mirrors), components built once by hack/cluster.sh from hack/kubelet's module and cached in
# /var/cache/berth; prints KUBECONFIG=... last. cluster-down stops it and removes what it made.
# CLUSTER_NODES=N adds N-1 node containers (hack/cluster-nodes.sh) to the host's node.
.PHONY: cluster-up cluster-down cluster-status cluster-e2e
CLUSTER_NODES ?= 1
cluster-up: build
	$(E2E_ENV) hack/cluster.sh up --nodes $(CLUSTER_NODES)

cluster-down:
	hack/cluster.sh down

# cluster-status: which of the cluster's processes run (the script exits 1 when none does).
cluster-status:
	hack/cluster.sh status || true

# cluster-e2e: kubectl scenarios (run, logs, exec, attach, cp, port-forward, scaling, Job, volumes,
# namespace deletion, in-place resize, stats summary; the single-node ones pinned to the host's
# node) and the multi-node ones (DaemonSet, spread, a node's berth killed, a node stopped) against
# one cluster of CLUSTER_E2E_NODES nodes the test brings up and takes down.
CLUSTER_E2E_NODES ?= 3
cluster-e2e: build
	hack/cluster.sh build
	$(E2E_ENV) BERTH_CLUSTER_NODES=$(CLUSTER_E2E_NODES) $(GOTEST) -timeout 40m -v ./test/e2e/cluster/

# conformance: e2e.test v1.37.2's [Conformance] and [NodeConformance] specs against the cluster
# above (brought up and down if none runs), skipping hack/conformance/skips.txt; prints
# "N passed, N failed, N skipped", details in _output/conformance/<time>-<runtime>/summary.md. Hours
# on two cores, so not part of test. FOCUS=regex / SKIP=regex replace the defaults; RUNTIME=containerd
# runs the node on containerd v2.4 + runc instead of berth; SEED=n and TIMEOUT=15m fix Ginkgo's order
# and stop the suite, so that two runtimes' runs reach the same specs; PARALLEL=n runs the specs in
# n processes ([Serial] ones alone at the end), as upstream's conformance jobs do.
# conformance-compare: BERTH=<report dir> CONTAINERD=<report dir> side by side (OUT=file.md).
.PHONY: conformance conformance-compare
conformance: build
	$(E2E_ENV) hack/conformance.sh run $(if $(RUNTIME),--runtime $(RUNTIME)) $(if $(NODES),--nodes $(NODES)) $(if $(FOCUS),--focus '$(FOCUS)') \
		$(if $(SKIP),--skip '$(SKIP)') $(if $(SEED),--seed $(SEED)) $(if $(TIMEOUT),--timeout $(TIMEOUT)) \
		$(if $(PARALLEL),--parallel $(PARALLEL))

conformance-compare:
	hack/conformance.sh compare '$(BERTH)' '$(CONTAINERD)' $(if $(OUT),--out '$(OUT)')

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

# bench-compare: berth against containerd (built and cached by hack/containerd.sh) on the same
# CRI workloads in one run, side by side; BENCH_ARGS=--quick for a smoke run. Not in `make test`.
.PHONY: bench-compare containerd
bench-compare: build
	hack/bench-compare.sh $(BENCH_ARGS)

containerd:
	hack/containerd.sh

# chaos: kill the agent, shims and CNI plugins (>= 200 agent kills) and inject faults under a
# churn of pods, then check that nothing was lost and nothing is left. chaos-short: ~12 kills, for CI.
chaos: build
	$(E2E_ENV) $(GO) run ./hack/chaos

chaos-short: build
	$(E2E_ENV) $(GO) run ./hack/chaos --short

clean:
	rm -rf $(BIN)

# install: the binaries in $(PREFIX)/bin, berth.service (hack/systemd), a default
# /etc/berth/config.toml and /etc/crictl.yaml where none exist; DESTDIR stages it. The logic is
# hack/install.sh, which also runs where there is no make (the test VM). uninstall keeps the
# configuration and the state.
PREFIX ?= /usr/local
.PHONY: install uninstall
install: build
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) hack/install.sh --bin-dir $(BIN)

uninstall:
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) hack/install.sh --uninstall

# fuzz: each fuzz target for FUZZTIME, one after the other (the long job); fuzz-short: 10s
# each (CI). A crasher is written to the package's testdata/fuzz/<Fuzz>/ and replayed by
# every later `go test`. FuzzApply needs root (mknod, chown); it skips otherwise.
FUZZTIME     ?= 10m
FUZZPARALLEL ?= 1
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline exceeded" when
# -fuzztime runs out, having found nothing (go.dev/issue/75804; CI failed FuzzNormalize so).
# 1.27 fixed it; the go command fetches this toolchain from the module proxy on first use.
FUZZ_GOTOOLCHAIN ?= go1.27.3
FUZZ_TARGETS := ./pkg/cri/server:FuzzCRI ./pkg/images/unpack:FuzzApply \
	./pkg/images/remote:FuzzHostsFile ./pkg/config:FuzzLoad \
	./pkg/images/reference:FuzzNormalize ./pkg/images/reference:FuzzParseID \
	./pkg/runtime:FuzzLogFileCopy
# FuzzCRI builds a Service (and its bbolt store) per input: on tmpfs its fsyncs are cheap.
FUZZ_TMPDIR  ?= $(if $(wildcard /dev/shm),/dev/shm,/tmp)

.PHONY: fuzz fuzz-short
fuzz:
	@$(MAKE) --no-print-directory fuzz-run FUZZ_FOR=$(FUZZTIME)

fuzz-short:
	@$(MAKE) --no-print-directory fuzz-run FUZZ_FOR=10s

.PHONY: fuzz-run
fuzz-run:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; start=$$(date +%s); \
		echo "fuzz: $$name ($$pkg) for $(FUZZ_FOR)"; \
		TMPDIR=$(FUZZ_TMPDIR) GOTOOLCHAIN=$(FUZZ_GOTOOLCHAIN) $(GO) test -tags $(TAGS) -timeout 0 -run '^$$' -fuzz "^$$name\$$" \
			-fuzztime $(FUZZ_FOR) -fuzzminimizetime 10s -parallel $(FUZZPARALLEL) $$pkg; \
		echo "fuzz: $$name fuzzed for $(FUZZ_FOR) ($$(( $$(date +%s) - start ))s with the build)"; \
	done

# vm-image, vm-test: a Debian 12 VM under qemu (systemd PID 1, cgroup v2), the node this host cannot be.
# `make vm-test VM_TEST='command'` runs a command inside (default hack/vm/smoke.sh); see hack/vm/run.sh.
.PHONY: vm-image vm-test vm-smoke vm-checkpoint
vm-image:
	hack/vm/build.sh >/dev/null

vm-test: build
	hack/vm/run.sh

# vm-test-full: the e2e suite, the kubelet scenarios and critest inside the VM (hack/vm/suites.sh),
# hours under TCG: not in `make test`. vm-subset: the cgroup/resources/stats/OOM part of each
# (about 4 min on a quiet machine); known failures in the VM are listed in hack/vm/known-failures.txt.
.PHONY: vm-test-full vm-subset
vm-test-full: build
	VM_TIMEOUT=$${VM_TIMEOUT:-10800} hack/vm/suites.sh

vm-subset: build
	VM_TIMEOUT=$${VM_TIMEOUT:-1800} hack/vm/suites.sh --subset

# vm-smoke: what differs on a modern node, checked in the VM: the cgroup v2 pod layout with
# limits (hack/vm/cgroupv2-smoke.sh), AppArmor's RuntimeDefault (hack/vm/apparmor-smoke.sh) and
# berth as a systemd service with the systemd cgroup driver (vm-systemd-smoke).
vm-smoke: build vm-image
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(GO) run ./hack/testimage layout --out "$$tmp/busybox.tar" >/dev/null && \
		VM_BINS="$$tmp/busybox.tar hack/vm/cgroupv2-smoke.sh" hack/vm/run.sh sh /share/bin/cgroupv2-smoke.sh
	hack/vm/apparmor-smoke.sh
	@$(MAKE) --no-print-directory vm-systemd-smoke

# vm-systemd-smoke: hack/install.sh installs berth.service in the VM; pods in slices, containers
# in scopes with their limits, then the agent restarted, stopped and SIGKILLed by systemd while
# its containers run on (hack/vm/systemd-smoke.sh).
.PHONY: vm-systemd-smoke
vm-systemd-smoke: build vm-image
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(GO) run ./hack/testimage layout --out "$$tmp/busybox.tar" >/dev/null && \
		VM_BINS="$$tmp/busybox.tar hack/vm/systemd-smoke.sh hack/install.sh hack/systemd/berth.service" \
		VM_TIMEOUT=$${VM_TIMEOUT:-1800} hack/vm/run.sh sh /share/bin/systemd-smoke.sh

# vm-systemd-smoke-v1: the same smoke with the VM booted on cgroup v1 (systemd's legacy hierarchy,
# systemd.unified_cgroup_hierarchy=0): the systemd driver's v1 path, as on older distributions.
.PHONY: vm-systemd-smoke-v1
vm-systemd-smoke-v1:
	@$(MAKE) --no-print-directory vm-systemd-smoke VM_KERNEL_ARGS=systemd.unified_cgroup_hierarchy=0

# vm-checkpoint: checkpoint and restore with CRIU in the Debian 12 VM (kernel 6.1), which the
# build hosts' kernels (>= 6.13) do not allow CRIU 3.17; the host's criu goes in with its libraries.
# One boot runs the container smoke (hack/vm/checkpoint-smoke.sh), then the pod one
# (hack/vm/checkpoint-pod-smoke.sh: CheckpointPod, RestorePod, a checkpoint image), which
# vm-checkpoint-pod runs alone.
.PHONY: vm-checkpoint-pod vm-checkpoint-run
vm-checkpoint: build vm-image
	@$(MAKE) --no-print-directory vm-checkpoint-run \
		VM_CKPT_CMD='sh /share/bin/checkpoint-smoke.sh && sh /share/bin/checkpoint-pod-smoke.sh'

vm-checkpoint-pod: build vm-image
	@$(MAKE) --no-print-directory vm-checkpoint-run VM_CKPT_CMD='sh /share/bin/checkpoint-pod-smoke.sh'

vm-checkpoint-run:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(GO) run ./hack/testimage layout --out "$$tmp/busybox.tar" >/dev/null && \
		CGO_ENABLED=0 $(GO) build -o "$$tmp/podckpt" ./hack/podckpt && \
		CGO_ENABLED=0 $(GO) build -o "$$tmp/testimage" ./hack/testimage && \
		tar -chf "$$tmp/criu.tar" -C / usr/sbin/criu $$(ldd /usr/sbin/criu | awk '$$3 ~ /^\// {print substr($$3, 2)}') && \
		VM_BINS="$$tmp/busybox.tar $$tmp/criu.tar $$tmp/podckpt $$tmp/testimage hack/vm/checkpoint-smoke.sh hack/vm/checkpoint-pod-smoke.sh" \
		hack/vm/run.sh '$(VM_CKPT_CMD)'
