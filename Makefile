# caseintake — see README.md. `make demo` runs it, `make test` proves it.
SHELL   := /bin/bash
GO      ?= go
PREFIX  ?= /usr/local
BIN     := bin/caseintake

.PHONY: all build test unit e2e demo lint fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/caseintake

# The whole suite: static checks, unit and integration tests with the race
# detector, then the end-to-end suite against a private Dovecot and Postfix
# (installed from Debian's packages by testdata/mailstack/mailstack.sh when
# missing and run as root).
test: lint unit e2e

unit:
	$(GO) test -race -count=1 ./...

e2e:
	./testdata/mailstack/mailstack.sh install
	$(GO) test -tags e2e -count=1 -v -timeout 20m ./e2e/

demo:
	$(GO) run ./cmd/caseintake demo

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
