# The README's test command is `make test`; CI (.ci/run) calls it.
GO ?= go
SEEDS ?= 100000
DURATION ?= 30m
# FUZZTIME is how long `make fuzz` runs each fuzz target; `make test` runs
# each for FUZZTIME_TEST.
FUZZTIME ?= 60s
FUZZTIME_TEST ?= 10s

.PHONY: test vet unit mutation fuzz cluster sim-long soak build playground playground-shots

# build embeds the playground (built first) in the binary.
build: playground
	$(GO) build -o bin/raftkv ./cmd/raftkv

# playground builds the Raft playground's WebAssembly module into
# playground/web (where the server embeds it from) and writes the whole
# static folder to PLAYGROUND_DIR, which any static host can serve. The
# module has the mutation tag: its what-if menu can put a named bug of the
# core in force (only in the browser; the server's own core has none).
PLAYGROUND_DIR ?= bin/playground
playground:
	GOOS=js GOARCH=wasm $(GO) build -tags mutation -trimpath -ldflags='-s -w' -o playground/web/raftkv.wasm ./cmd/playground
	@root="$$($(GO) env GOROOT)"; js="$$root/lib/wasm/wasm_exec.js"; \
	  [ -f "$$js" ] || js="$$root/misc/wasm/wasm_exec.js"; cp "$$js" playground/web/wasm_exec.js
	gzip -9 -n -c playground/web/raftkv.wasm > playground/web/raftkv.wasm.gz
	rm -rf $(PLAYGROUND_DIR) && mkdir -p $(PLAYGROUND_DIR) && cp playground/web/* $(PLAYGROUND_DIR)/
	@ls -l $(PLAYGROUND_DIR)/raftkv.wasm $(PLAYGROUND_DIR)/raftkv.wasm.gz

# playground-shots renews the playground screenshots in docs/img, the
# Chinese one too (it needs a CJK font: apt-get install fonts-noto-cjk).
playground-shots:
	RAFTKV_PLAYGROUND_SHOTS=$(CURDIR)/docs/img $(GO) test -count=1 -run 'TestPlaygroundInBrowser|TestPlaygroundChinese' -v ./playground

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) vet -tags cluster ./test/cluster
	$(GO) vet -tags mutation ./raft ./sim
	$(GO) vet -tags stagetrace ./internal/stagetrace ./driver ./node ./transport ./server

# test: everything CI runs — vet, every package under the race detector
# (the simulator's seeds included), the bench module's vet and tests, the
# mutation suite, every fuzz target
# for FUZZTIME_TEST, then a short run of every nemesis against real
# processes in network namespaces (needs root; skips with a message
# otherwise, fails when CI is set).
test: vet unit mutation
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_TEST)
	@$(MAKE) --no-print-directory cluster

# fuzz runs every fuzz target of the repository (every `func FuzzX` in a
# _test.go file) for FUZZTIME each, one after the other
# (scripts/fuzz-target.sh).
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "fuzz: $$t in ./$$(dirname $${f#./}) for $(FUZZTIME)"; \
	    GO=$(GO) scripts/fuzz-target.sh $$(dirname $${f#./}) $$t $(FUZZTIME); \
	  done; \
	done

unit:
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -tags stagetrace -count=1 ./internal/stagetrace
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...

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
