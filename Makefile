# openwatch: the binary, the generated scriptlets and the .rpm/.deb packages.
# The two commands a newcomer needs: `make packages` and `make test`.

VERSION ?= 1.0.0
RELEASE ?= 1
GO      ?= go
PKG     := github.com/openwatch/openwatch
LDFLAGS := -s -w -X $(PKG)/internal/version.Version=$(VERSION)-$(RELEASE)

.PHONY: all build generate check-generate packages repo test test-deps test-roots test-pgmatrix lint vet e2e bench clean

all: packages

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o build/openwatch ./cmd/openwatch

# Render dist/ and nfpm.yaml from the spec in gen/.
generate:
	$(GO) run ./cmd/gen

# Fail, showing the diff, when the committed generated files are stale.
check-generate:
	$(GO) run ./cmd/gen -check

# SIGNING_KEY=FILE (an OpenPGP secret key, armored or binary) signs every RPM
# and the .deb; its passphrase, if any, is read from NFPM_PASSPHRASE in the
# environment, never from the command line. Without it: unsigned, and said so.
SIGNING_KEY ?=

packages: build
	$(GO) run ./cmd/mkpkg -version '$(VERSION)' -release '$(RELEASE)' -binary build/openwatch -out dist $(if $(SIGNING_KEY),-signing-key '$(SIGNING_KEY)')

# Signed repositories from the packages of make packages (built first, signed
# with the same key): dist/repo/rpm/el8|el9|el10 (createrepo_c, repomd.xml.asc),
# dist/repo/deb (apt-ftparchive; dists/stable/InRelease, Release, Release.gpg),
# dist/repo/openwatch.asc. Reproducible: the same packages give the same tree.
repo:
	@if [ -z '$(SIGNING_KEY)' ]; then \
		echo "make repo: a repository must be signed; run: make repo SIGNING_KEY=FILE (passphrase, if any, in NFPM_PASSPHRASE)" >&2; exit 1; fi
	$(MAKE) packages
	$(GO) run ./cmd/mkrepo -signing-key '$(SIGNING_KEY)' -dist dist -out dist/repo

test-deps:
	sh scripts/test-deps.sh

# The Debian roots holding PostgreSQL 13, 17 and 18 for the matrix, cached in
# /var/cache/openwatch-test (built once, as root; rebuilt when incomplete).
test-roots: test-deps
	sh scripts/pg-roots.sh

# The PostgreSQL test packages against 13, 17 and 18 (15 is the host's, in
# the go test of make test; e2e runs on the host's 15 only).
test-pgmatrix: test-roots
	sh scripts/pg-matrix.sh

vet:
	$(GO) vet ./...

# squawk (npm package squawk-cli, the exact version pinned in package.json and
# package-lock.json) installs into node_modules/ of this checkout, never
# globally; the npm package ships its binary, nothing else is downloaded.
# (npm install, not npm ci: the lock lists only the linux-x64 platform
# package, which npm ci would count as out of sync on other platforms.)
SQUAWK     := node_modules/.bin/squawk
MIGRATIONS ?= migrations

$(SQUAWK): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# Lint the migrations with squawk and .squawk.toml, each up and down section
# apart, each as dbmate runs it (in a transaction unless its line says
# transaction:false); a down section is linted as one (it may drop what its up
# section created) and must not be empty unless it says why
# (-- no-way-down -- REASON). A rule is waived only in the migration, with a
# reason: -- squawk-ignore RULE -- REASON. See scripts/lint-migrations.sh.
lint: $(SQUAWK)
	@sh scripts/lint-migrations.sh $(SQUAWK) $(MIGRATIONS)

# Every test: unit, generated-script behaviour under four shells, real
# PostgreSQL (the host's 15, then 13, 17 and 18 from the cached roots), and
# real dpkg/rpm upgrades in a disposable root.
# The tests write only into their temp dirs: a file they leave in the
# checkout (compared with git status before and after) fails the run.
test: test-deps test-roots lint check-generate vet
	@before=$$(mktemp); git status --porcelain --untracked-files=all >"$$before" 2>/dev/null; \
	$(GO) test -count=1 -timeout 80m ./...; rc=$$?; \
	sh scripts/pg-matrix.sh || rc=1; \
	if ! git status --porcelain --untracked-files=all 2>/dev/null | cmp -s "$$before" -; then \
		echo "make test: the tests changed or left these files in the checkout (they must write only into their temp dirs):" >&2; \
		git status --porcelain --untracked-files=all | diff "$$before" - >&2; rc=1; \
	fi; \
	rm -f "$$before"; exit $$rc

# Only the package-manager end-to-end upgrade tests.
e2e: test-deps
	$(GO) test -count=1 -timeout 80m -v ./e2e/

bench: test-deps
	$(GO) run ./bench $(BENCH_ARGS)

clean:
	rm -rf build dist/*.rpm dist/*.deb dist/repo
