# retraced — `make help` lists the targets.
GO       ?= go
BIN      ?= bin
DATA     ?= ./retraced-data
CORPUS   ?= /var/tmp/retraced-corpus
# liblzma: decode xz payloads with liblzma in process (cgo; needs
# liblzma-dev). Without it xz goes through an xz process, or the Go decoder.
TAGS     ?= liblzma
export GOFLAGS := -tags=$(TAGS) $(GOFLAGS)

.PHONY: help build test test-short lint fuzz bench bench-compare bench-retrace run fixtures clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/retraced
	$(GO) build -o $(BIN)/retraced ./cmd/retraced

test: ## run every test with the race detector (needs rpm, createrepo_c, gdb, elfutils, liblzma-dev: see .ci/run)
	$(GO) test -race -timeout 20m ./...

test-short: ## tests without the race detector
	$(GO) test ./...

lint: ## go vet (with and without TAGS), gofmt, golangci-lint when installed
	$(GO) vet ./...
	GOFLAGS= $(GO) vet ./mirror/rpmfile/
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@if command -v golangci-lint >/dev/null; then golangci-lint run ./...; else echo "golangci-lint not installed; skipped"; fi

fuzz: ## run each fuzz target for FUZZTIME executions or duration (default 30000x)
	@./scripts/fuzz.sh $${FUZZTIME:-30000x}

bench: ## Go benchmarks (index lookups, ingest, unchanged tree sync, gc of 100k files, grouping 1,000 crashes, /crashes of 10,000 signatures)
	$(GO) test -run '^$$' -bench . -benchtime 2s ./index/ ./mirror/... ./gc/ ./retrace/crashes/

bench-compare: build ## ingest CORPUS with retraced and with debuginfod -R; print times and ratios
	bash bench/compare.sh $(CORPUS) $(BIN)/retraced

bench-retrace: build ## retrace tasks of the fixture cores through serve, beside gdb with DEBUGINFOD_URLS; medians and ratios
	bash bench/retrace.sh $(BIN)/retraced

run: build ## serve the bundled fixture repository on 127.0.0.1:8080
	$(BIN)/retraced --data $(DATA) serve

fixtures: ## rebuild fixtures/ with rpmbuild and createrepo_c
	bash fixtures/build.sh

clean: ## remove build output (not the data directory)
	rm -rf $(BIN)
