# The README's test command is `make test`; CI (.ci/run) calls it.
GO ?= go
SEEDS ?= 100000

.PHONY: test vet sim-long build

build:
	$(GO) build -o bin/raftkv ./cmd/raftkv

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

test: vet
	$(GO) test -race -count=1 -timeout 20m ./...

# sim-long runs the simulator over many seeds (documented in README).
sim-long:
	$(GO) test -count=1 -timeout 0 -run TestSimulation ./sim -seeds=$(SEEDS)
