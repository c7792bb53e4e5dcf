# The README's test command is `make test`; CI (.ci/run) calls it.
GO ?= go
SEEDS ?= 100000
DURATION ?= 30m

.PHONY: test vet unit mutation cluster sim-long soak build

build:
	$(GO) build -o bin/raftkv ./cmd/raftkv

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) vet -tags cluster ./test/cluster
	$(GO) vet -tags mutation ./raft ./sim

# test: everything CI runs — vet, every package under the race detector
# (the simulator's seeds included), the mutation suite, then a short run of
# every nemesis against real processes in network namespaces (needs root;
# skips with a message otherwise).
test: vet unit mutation cluster

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# mutation: the core built with each named bug (raft.Mutation) in turn; the
# simulator must report a violation of each within a bounded number of seeds.
mutation:
	$(GO) test -tags mutation -count=1 -timeout 10m -run TestMutation ./sim ./raft

cluster:
	$(GO) test -tags cluster -count=1 -timeout 20m ./test/cluster

# sim-long runs the simulator over many seeds (documented in README).
sim-long:
	$(GO) test -count=1 -timeout 0 -run TestSimulation ./sim -seeds=$(SEEDS)

# soak runs the nemeses round after round and prints a summary table.
soak:
	RAFTKV_SOAK=$(DURATION) $(GO) test -tags cluster -count=1 -timeout 0 -run TestSoak -v ./test/cluster
