# quorumca: a clustered certificate authority.
#   make dev    run a single-node CA on https://127.0.0.1:8443, ready to issue
#               (make dev PORT=9443 DEV_ARGS="-nodes 3": another port, more nodes)
#   make test   run every test (needs curl, openssl, gcc, softhsm2, systemd-analyze,
#               haproxy, nginx, python3 with cryptography, docker with a running
#               engine and docker-compose, iptables, nsenter, terraform with its
#               AWS provider mirror; as root: the chaos suite partitions nodes).
#               make tools checks them all.

GO      ?= go
BIN     := bin/quorumca
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 300000x

.PHONY: build build-pkcs11 agent agent-cross dev test lint lint-tools bench bench-peers fuzz tools clean

# The default build is static (CGO_ENABLED=0) and has no PKCS#11 backend.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/quorumca

# The PKCS#11 build links crypto11 through cgo (needs gcc and the HSM's module).
build-pkcs11:
	CGO_ENABLED=1 $(GO) build -tags pkcs11 -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)-pkcs11 ./cmd/quorumca

# The device agent alone (-tags agent): a small static binary for devices.
AGENT_ARCHS := amd64 arm64 arm
agent:
	CGO_ENABLED=0 $(GO) build -tags agent -trimpath -ldflags "$(LDFLAGS)" -o bin/quorumca-agent ./cmd/quorumca

agent-cross:
	@for a in $(AGENT_ARCHS); do \
		echo "bin/quorumca-agent-linux-$$a"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a GOARM=7 $(GO) build -tags agent -trimpath -ldflags "$(LDFLAGS)" \
			-o bin/quorumca-agent-linux-$$a ./cmd/quorumca || exit 1; \
	done

# The API on 127.0.0.1:PORT; Raft on PORT+1000 and plain HTTP on PORT+2000
# unless DEV_ARGS moves them (-raft-addr, -http-addr).
PORT     ?= 8443
DEV_ARGS ?=
dev: build
	./$(BIN) dev -listen 127.0.0.1:$(PORT) $(DEV_ARGS)

# What make test needs, every piece checked before anything runs: missing
# ones stop the run with one message naming them all; no test is silently
# skipped. .ci/run installs the Debian packages on a fresh machine.
TOOLS := curl openssl softhsm2-util gcc systemd-analyze haproxy nginx python3 docker docker-compose iptables nsenter certbot scepclient terraform
tools:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	python3 -c 'import cryptography' 2>/dev/null || missing="$$missing python3-cryptography"; \
	problems=""; \
	if [ -n "$$missing" ]; then problems="$$problems\n  missing:$$missing (Debian: apt-get install curl openssl softhsm2 gcc systemd haproxy nginx-light python3 python3-cryptography docker.io docker-compose iptables util-linux certbot scep; terraform: terraform/README.md)"; fi; \
	if command -v docker >/dev/null && ! docker info >/dev/null 2>&1; then problems="$$problems\n  no Docker engine answers (docker info): compose-smoke and chaos-short need one"; fi; \
	if [ "$$(id -u)" -ne 0 ]; then problems="$$problems\n  not root: the chaos suite partitions nodes with iptables in their network namespaces"; fi; \
	if command -v terraform >/dev/null && ! out=$$(./terraform/check.sh -tools 2>&1); then problems="$$problems\n  $$out"; fi; \
	if [ -n "$$problems" ]; then printf '%b\n' "make test cannot run:$$problems"; exit 1; fi

# Tests run with the PKCS#11 backend compiled in (cgo), so SoftHSM2 tests run.
# The agent fleet test is built only without -race (a thousand agents under
# the race detector measure the detector), so it runs on its own.
test: tools lint
	CGO_ENABLED=1 $(GO) test -tags pkcs11 -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run '^TestAgentFleet' -v ./node
	$(GO) test -count=1 -run '^TestChurnReusesFreePages$$' -v ./bench
	$(MAKE) --no-print-directory fuzz FUZZTIME=20000x
	$(MAKE) --no-print-directory terraform-check
	$(MAKE) --no-print-directory compose-smoke
	$(MAKE) --no-print-directory chaos-short

# staticcheck at a pinned version, installed by go install (through the
# module proxy) under bin/tools, outside the module's dependencies.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := bin/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck

lint-tools: $(STATICCHECK)

$(STATICCHECK):
	GOBIN=$(CURDIR)/$(@D) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# staticcheck checks the three builds in one run (-matrix), so code that
# only the pkcs11 or the agent build uses is not reported unused.
lint: lint-tools
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) vet -tags pkcs11 ./...
	$(GO) vet -tags agent ./cmd/quorumca
	printf 'default:\npkcs11: CGO_ENABLED=1 -tags=pkcs11\nagent: -tags=agent\n' | $(STATICCHECK) -matrix ./...

# A short version of every benchmark (Go benchmarks, the ceiling, enrollment
# and renewal on 1 and 3 nodes, a storm, the FSM at 100k records, then
# quorumca beside step-ca and CFSSL) written to BENCH_OUT; compare figures
# from one run, not across machines. The peers section installs step-ca and
# CFSSL through the Go module proxy the first time; BENCH_PEERS=0 skips it,
# make bench-peers runs it alone.
BENCH_OUT ?= bench/results/latest
bench: build
	CGO_ENABLED=1 BENCH_TAGS=pkcs11 ./bench/short.sh $(BIN) $(BENCH_OUT)

bench-peers: build
	./bench/peers.sh $(BIN) $(BENCH_OUT)

# Each fuzz target for FUZZTIME executions; make test runs 20,000 each (a
# few seconds). Counts, not durations: Go 1.26 can fail a fuzz run with a
# bare "context deadline exceeded" when a duration ends while a worker is
# busy (go.dev/issue/75804, fixed in Go 1.27).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseCSR$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeName$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzURIPolicy$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeSerial$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzOneTimeTokens$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzOCSPRequest$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzFactoryNames$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run '^$$' -fuzz '^FuzzSplitBatch$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run '^$$' -fuzz '^FuzzIssuePayload$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run '^$$' -fuzz '^FuzzRenewPayload$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run '^$$' -fuzz '^FuzzParseBundle$$' -fuzztime $(FUZZTIME) ./agent
	$(GO) test -run '^$$' -fuzz '^FuzzParseJWS$$' -fuzztime $(FUZZTIME) ./acme
	$(GO) test -run '^$$' -fuzz '^FuzzRedeemNonce$$' -fuzztime $(FUZZTIME) ./acme
	$(GO) test -run '^$$' -fuzz '^FuzzStrictObject$$' -fuzztime $(FUZZTIME) ./acme
	$(GO) test -run '^$$' -fuzz '^FuzzCertID$$' -fuzztime $(FUZZTIME) ./acme
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./scep

clean:
	rm -rf bin

# Container images and a compose cluster (deploy/). Every image is FROM
# scratch, built from local files in a temporary context: nothing is pulled.
#   make image          quorumca:local: bin/quorumca, the host's CA roots, user 65532
#   make compose-up     every image, then three nodes behind HAProxy with keys in local-kms
#   make compose-smoke  up; token, enrollment, mTLS renewal, revocation through HAProxy; down
#   make compose-down   stop and remove the cluster (containers, network, volumes)
CA_ROOTS ?= /etc/ssl/certs/ca-certificates.crt
HAPROXY  ?= /usr/sbin/haproxy

.PHONY: image image-haproxy image-local-kms compose-images compose-tools compose-up compose-down compose-smoke

compose-tools:
	@missing=""; for t in docker docker-compose curl openssl; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	test -x $(HAPROXY) || missing="$$missing haproxy"; \
	if [ -n "$$missing" ]; then echo "compose: missing:$$missing (Debian: apt-get install docker.io docker-compose haproxy curl openssl)"; exit 1; fi

image: build
	@command -v docker >/dev/null || { echo "make image: docker is missing (Debian: apt-get install docker.io)"; exit 1; }
	@test -r $(CA_ROOTS) || { echo "make image: $(CA_ROOTS) is missing (Debian: apt-get install ca-certificates)"; exit 1; }
	@ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && \
	mkdir -p $$ctx/rootfs/etc/quorumca $$ctx/rootfs/etc/ssl/certs $$ctx/state && \
	cp $(CA_ROOTS) $$ctx/rootfs/etc/ssl/certs/ca-certificates.crt && \
	printf 'root:x:0:0:root:/:/sbin/nologin\nquorumca:x:65532:65532:quorumca:/var/lib/quorumca:/sbin/nologin\n' >$$ctx/rootfs/etc/passwd && \
	printf 'root:x:0:\nquorumca:x:65532:\n' >$$ctx/rootfs/etc/group && \
	cp $(BIN) $$ctx/quorumca && cp deploy/Dockerfile $$ctx/Dockerfile && \
	docker build -q -t quorumca:local $$ctx

# HAProxy cannot be pulled: the host's binary (Debian: apt-get install
# haproxy), the libraries ldd lists and the dynamic loader.
image-haproxy:
	@command -v docker >/dev/null || { echo "make image-haproxy: docker is missing (Debian: apt-get install docker.io)"; exit 1; }
	@test -x $(HAPROXY) || { echo "make image-haproxy: $(HAPROXY) is missing (Debian: apt-get install haproxy)"; exit 1; }
	@if ldd $(HAPROXY) | grep -q 'not found'; then ldd $(HAPROXY); exit 1; fi
	@ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && \
	mkdir -p $$ctx/rootfs/etc/haproxy $$ctx/rootfs/usr/sbin && cp -L $(HAPROXY) $$ctx/rootfs/usr/sbin/haproxy && \
	for f in $$(ldd $(HAPROXY) | awk '$$2 == "=>" && $$3 ~ /^\// { print $$3 } $$1 ~ /^\// { print $$1 }'); do \
		cp --parents -L $$f $$ctx/rootfs || exit 1; \
	done && \
	cp deploy/Dockerfile.haproxy $$ctx/Dockerfile && \
	docker build -q -t quorumca-haproxy:local $$ctx

# local-kms, static, from the module go.mod already requires.
image-local-kms:
	@command -v docker >/dev/null || { echo "make image-local-kms: docker is missing (Debian: apt-get install docker.io)"; exit 1; }
	@ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && mkdir -p $$ctx/state && \
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $$ctx/local-kms github.com/nsmithuk/local-kms && \
	cp deploy/Dockerfile.local-kms $$ctx/Dockerfile && \
	docker build -q -t quorumca-local-kms:local $$ctx

compose-images: image image-haproxy image-local-kms

compose-up: compose-tools compose-images
	deploy/compose.sh up

compose-down:
	deploy/compose.sh down

compose-smoke: compose-tools compose-images
	deploy/smoke.sh

# Fault-injection suite (chaos/): 3 or 5 quorumca containers behind HAProxy
# under a device workload while a nemesis kills, pauses and partitions
# nodes; then every node's state is checked. Needs docker, haproxy, nsenter
# and iptables, as root. Results (history, summary, timeline) go to
# CHAOS_OUT, by default chaos/results/<time>/.
#   make chaos-short                     one fault of each kind, 3 nodes (make test runs it)
#   make chaos CHAOS_MINUTES=30 NODES=5  faults for CHAOS_MINUTES (whole minutes)
CHAOS_MINUTES ?= 10
NODES         ?= 3
CHAOS_OUT     ?=
CHAOS_RUN      = CGO_ENABLED=0 CHAOS_OUT=$(CHAOS_OUT) $(GO) test -tags chaos -run '^TestChaos$$' -count=1 -v

.PHONY: chaos chaos-short chaos-tools

chaos-tools:
	@missing=""; for t in docker haproxy nsenter iptables; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then echo "make chaos: missing:$$missing (Debian: apt-get install docker.io haproxy util-linux iptables)"; exit 1; fi; \
	if [ "$$(id -u)" -ne 0 ]; then echo "make chaos: run as root (partitions use iptables in the nodes' network namespaces)"; exit 1; fi

chaos: chaos-tools
	CHAOS_MINUTES=$(CHAOS_MINUTES) CHAOS_NODES=$(NODES) $(CHAOS_RUN) -timeout $$(( $(CHAOS_MINUTES) + 30 ))m ./chaos

chaos-short: chaos-tools
	CHAOS_SHORT=1 CHAOS_NODES=3 $(CHAOS_RUN) -timeout 15m ./chaos

# make test includes the short chaos run, so CI fails on any violation.

# Terraform module and example under terraform/: fmt, validate, and terraform
# test against a mocked AWS provider, all offline (needs terraform and a local
# provider mirror with hashicorp/aws; see terraform/README.md).
.PHONY: terraform-check
terraform-check: ; ./terraform/check.sh
