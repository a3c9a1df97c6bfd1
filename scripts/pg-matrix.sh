#!/bin/sh
# The PostgreSQL matrix of make test: runs the Go test packages that talk to
# PostgreSQL against each major in the cached roots (scripts/pg-roots.sh
# builds them). 15, the host's, is the plain go test of make test; e2e runs
# on the host's only. Each run is a chroot into the major's root, in a
# private mount namespace, with this checkout, the Go toolchain, module and
# build caches bind-mounted at their own paths, so the tests find that
# major's server and client programs (PG_BINDIR, PATH) and nothing else.
# A failure in any major fails the run and names it. The servers the tests
# start (internal/pgtest) run autovacuum aggressively on every major.
#
#   sh scripts/pg-matrix.sh            # 13 17 18
#   sh scripts/pg-matrix.sh 13         # one major
#   PG_MATRIX_RUN=TestCheckpoint sh scripts/pg-matrix.sh 13   # one test (go test -run)
#   PG_MATRIX_FLAGS=-v ...                                     # more go test flags
set -eu

cache=${OPENWATCH_TEST_CACHE:-/var/cache/openwatch-test}
majors=${*:-13 17 18}
pkgs='./internal/pgtest ./internal/migrate ./internal/migrate/rehearse ./internal/dump ./internal/dsn ./internal/clone ./internal/cli'
go=${GO:-go}

[ -f go.mod ] || { echo "pg-matrix: run it from the top of the checkout" >&2; exit 2; }
if [ "$(id -u)" -ne 0 ]; then
	echo "make test: the PostgreSQL matrix needs root (chroot, mount namespaces); run make test as root" >&2
	exit 1
fi
# shellcheck disable=SC2086 # one word per major
sh scripts/pg-roots.sh $majors

src=$(pwd -P)
goroot=$($go env GOROOT)
gocache=$($go env GOCACHE)
gomodcache=$($go env GOMODCACHE)
# Everything the tests build needs is in the module cache already.
$go mod download

# Tests that check what does not depend on the PostgreSQL major with a host
# tool the minimal roots lack (promtool): they run in make test's go test on
# the host's 15 (PG_MATRIX_SKIP= runs them here too).
skip=${PG_MATRIX_SKIP-TestPruneWritesTheUpgradeStateForMonitoring}
failed=''
for m in $majors; do
	root=$cache/pg-$m
	start=$(date +%s)
	echo "pg-matrix: PostgreSQL $m ($root): go test $pkgs" >&2
	# shellcheck disable=SC2016,SC2086 # expanded by the inner shell; one word per package
	if unshare -m sh -c '
		set -eu
		r=$1 m=$2 src=$3 goroot=$4 gocache=$5 gomodcache=$6 run=$7 flags=$8 skip=$9
		shift 9
		mount -t proc proc "$r/proc"
		mount --rbind /dev "$r/dev"
		mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
		for d in "$src" "$goroot" "$gocache" "$gomodcache"; do
			mkdir -p "$r$d"
			mount --bind "$d" "$r$d"
		done
		# The checkout and the toolchain are read-only in there: the
		# tests write only into their temp dirs.
		mount -o remount,bind,ro "$r$src"
		mount -o remount,bind,ro "$r$goroot"
		mount -o remount,bind,ro "$r$gomodcache"
		exec chroot "$r" env -i PATH="$goroot/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root TMPDIR=/tmp LANG=C.UTF-8 \
			GOCACHE="$gocache" GOMODCACHE="$gomodcache" GOFLAGS=-mod=readonly GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0 \
			PG_BINDIR="/usr/lib/postgresql/$m/bin" OPENWATCH_TEST_MAJOR="$m" \
			sh -c "cd \"\$0\" && exec go test -count=1 -timeout 30m -run \"\$1\" -skip \"$skip\" $flags $*" "$src" "$run"
	' sh "$root" "$m" "$src" "$goroot" "$gocache" "$gomodcache" "${PG_MATRIX_RUN:-.}" "${PG_MATRIX_FLAGS:-}" "$skip" $pkgs; then
		echo "pg-matrix: PostgreSQL $m: ok in $(($(date +%s) - start))s" >&2
	else
		echo "pg-matrix: PostgreSQL $m: FAILED (in $(($(date +%s) - start))s; rerun with: sh scripts/pg-matrix.sh $m)" >&2
		failed="$failed $m"
	fi
done
if [ -n "$failed" ]; then
	echo "make test: the PostgreSQL matrix failed on PostgreSQL$failed (the output above names the tests)" >&2
	exit 1
fi
