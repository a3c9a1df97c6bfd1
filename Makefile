# openwatch: the binary, the generated scriptlets and the .rpm/.deb packages.
# The two commands a newcomer needs: `make packages` and `make test`.

VERSION ?= 1.0.0
RELEASE ?= 1
GO      ?= go
PKG     := github.com/openwatch/openwatch
LDFLAGS := -s -w -X $(PKG)/internal/version.Version=$(VERSION)-$(RELEASE)

.PHONY: all build generate check-generate packages test test-deps vet e2e bench clean

all: packages

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o build/openwatch ./cmd/openwatch

# Render dist/ and nfpm.yaml from the spec in gen/.
generate:
	$(GO) run ./cmd/gen

# Fail, showing the diff, when the committed generated files are stale.
check-generate:
	$(GO) run ./cmd/gen -check

packages: build
	$(GO) run ./cmd/mkpkg -version '$(VERSION)' -release '$(RELEASE)' -binary build/openwatch -out dist

test-deps:
	sh scripts/test-deps.sh

vet:
	$(GO) vet ./...

# Every test: unit, generated-script behaviour under four shells, real
# PostgreSQL, and real dpkg/rpm upgrades in a disposable root.
test: test-deps check-generate vet
	$(GO) test -count=1 -timeout 80m ./...

# Only the package-manager end-to-end upgrade tests.
e2e: test-deps
	$(GO) test -count=1 -timeout 80m -v ./e2e/

bench: test-deps
	$(GO) run ./bench $(BENCH_ARGS)

clean:
	rm -rf build dist/*.rpm dist/*.deb
