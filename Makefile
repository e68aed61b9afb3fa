# xenmig build, test and lint targets. See README.md.

export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
GOBIN   := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN)/staticcheck

.PHONY: all build build-xen test test-xen bench lint demo clean xenlab test-xenlab

all: build

## build: the dom0 binary and the guest agent into bin/ (simulator backend only)
build:
	mkdir -p bin
	$(GO) build -o bin/ ./cmd/...

## build-xen: the same with the real Xen backend (needs libxen-dev, cgo)
build-xen:
	mkdir -p bin
	$(GO) build -tags xen -o bin/ ./cmd/...

## test: every test (the README's test command)
test:
	$(GO) test ./...

## test-xen: vet and test the real Xen backend (needs libxen-dev; live tests need a Xen dom0)
test-xen:
	$(GO) vet -tags xen ./xenctrl/... ./cmd/...
	$(GO) test -tags xen ./xenctrl/

## bench: the migration benchmark table (xenmig bench)
bench: build
	./bin/xenmig bench

## lint: gofmt, go vet and staticcheck
lint:
	@files=$$(gofmt -l .); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi
	$(GO) vet ./...
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@latest
	$(STATICCHECK) -tags xen ./...  # the full build: helpers of the real backend are used only under the tag

## demo: a post-copy migration between two simulated hosts in this process
demo:
	$(GO) run ./cmd/xenmig demo

## xenlab: build the real-Xen lab (Xen 4.17 in QEMU, dom0 and guest from Debian packages), cached
xenlab:
	lab/xen/build

## test-xenlab: run the lab's self-test and scenarios, summary and lab/xen/out/results.jsonl
test-xenlab: xenlab
	lab/xen/test

clean:
	rm -rf bin out lab/xen/out
