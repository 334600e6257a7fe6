# quorumca: a clustered certificate authority.
#   make dev    run a single-node CA on https://127.0.0.1:8443, ready to issue
#   make test   run every test (needs curl, openssl, gcc, softhsm2, systemd-analyze)

GO      ?= go
BIN     := bin/quorumca
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: build build-pkcs11 agent agent-cross dev test lint bench fuzz tools clean

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

dev: build
	./$(BIN) dev

# Tools the tests use. Missing ones stop the run with a message; no test is
# silently skipped.
tools:
	@missing=""; for t in curl openssl softhsm2-util gcc systemd-analyze; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then echo "make test: missing:$$missing (Debian: apt-get install curl openssl softhsm2 gcc systemd)"; exit 1; fi

# Tests run with the PKCS#11 backend compiled in (cgo), so SoftHSM2 tests run.
# The agent fleet test is built only without -race (a thousand agents under
# the race detector measure the detector), so it runs on its own.
test: tools lint
	CGO_ENABLED=1 $(GO) test -tags pkcs11 -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run '^TestAgentFleet' -v ./node
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) vet -tags pkcs11 ./...
	$(GO) vet -tags agent ./cmd/quorumca

# Benchmarks; compare figures from one run, not across machines.
bench:
	CGO_ENABLED=1 $(GO) test -tags pkcs11 -run '^$$' -bench . -benchmem ./...

# Each fuzz target for FUZZTIME; make test runs them for a few seconds.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseCSR$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeName$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeSerial$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzOneTimeTokens$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzOCSPRequest$$' -fuzztime $(FUZZTIME) ./authority
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run '^$$' -fuzz '^FuzzParseBundle$$' -fuzztime $(FUZZTIME) ./agent

clean:
	rm -rf bin
