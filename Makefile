# caseintake — see README.md. `make demo` runs it, `make test` proves it.
SHELL   := /bin/bash
GO      ?= go
PREFIX  ?= /usr/local
BIN     := bin/caseintake

.PHONY: all build test unit e2e demo lint fmt clean install bench

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
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZ_BRIEF) FUZZERS="$(BRIEF_FUZZERS)"

# fuzz runs every fuzzer for FUZZTIME each (go test's -fuzztime: a
# duration, or a count of executions as in 20000x). make test runs the fast
# ones for FUZZ_BRIEF executions each: a duration there failed now and then
# with "context deadline exceeded" and no finding, a race in Go's fuzzing
# coordinator at the deadline (go.dev/issue/75804, fixed in Go 1.27),
# which a count never meets. A finding is written to the package's
# testdata/fuzz/ and fails the run: commit it as a regression seed with
# the fix.
.PHONY: fuzz
FUZZTIME   ?= 60s
FUZZ_BRIEF ?= 20000x
FUZZERS    := classify:FuzzParse classify:FuzzDecodeSubject classify:FuzzUrgencyMatch intake:FuzzHandle
# The brief run in make test leaves out FuzzHandle: each of its executions
# fsyncs (tens a second). Its seeds still run in every go test; make fuzz
# gives it real time.
BRIEF_FUZZERS := classify:FuzzParse classify:FuzzDecodeSubject classify:FuzzUrgencyMatch
fuzz:
	@set -e; for f in $(FUZZERS); do \
		pkg=$${f%%:*}; name=$${f#*:}; \
		echo "fuzz $$name in ./$$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg; \
	done

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

# bench measures ingest against the mail server's and the disk's limits
# (issue #6): backlog drain vs raw FETCH, latency, memory, store scale. It
# starts its own Dovecot and Postfix (as root, like e2e), prints a table and
# writes bench/out/bench.json; BENCH_FLAGS passes options (-n, -runs, -only,
# -cases, -drain-limit; see go run ./bench/cmd/caseintake-bench -h).
bench: build
	./testdata/mailstack/mailstack.sh install
	$(GO) run ./bench/cmd/caseintake-bench -bin $(BIN) -out bench/out $(BENCH_FLAGS)

# install puts the binary, the systemd unit, an example config and an empty
# secret layout in place; DESTDIR and PREFIX are honoured (packaging).
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/caseintake
	install -D -m 0644 caseintake.service $(DESTDIR)$(PREFIX)/lib/systemd/system/caseintake.service
	sed -i 's#/usr/local/bin/caseintake#$(PREFIX)/bin/caseintake#' $(DESTDIR)$(PREFIX)/lib/systemd/system/caseintake.service
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/caseintake/README.md
	install -d -m 0750 $(DESTDIR)/etc/caseintake
	test -e $(DESTDIR)/etc/caseintake/caseintake.yaml || install -m 0640 testdata/caseintake.example.yaml $(DESTDIR)/etc/caseintake/caseintake.yaml
	for f in api.token imap.secret smtp.secret; do \
		test -e $(DESTDIR)/etc/caseintake/$$f || install -m 0640 /dev/null $(DESTDIR)/etc/caseintake/$$f; done

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
