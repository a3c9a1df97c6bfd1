#!/bin/sh
# Builds the PostgreSQL roots the test matrix runs in (scripts/pg-matrix.sh):
# one Debian root per PostgreSQL major, made with debootstrap --variant=minbase
# and the distribution's own server package, cached outside the checkout in
# $OPENWATCH_TEST_CACHE (default /var/cache/openwatch-test) as pg-<major>.
# A root is complete when its marker file exists; a missing or incomplete one
# is built again (into pg-<major>.partial, renamed when done).
#
#   sh scripts/pg-roots.sh              # build what is missing (needs root)
#   sh scripts/pg-roots.sh --check      # only say what is missing, exit 1 if any
#   sh scripts/pg-roots.sh 13 18        # only these majors
set -eu

cache=${OPENWATCH_TEST_CACHE:-/var/cache/openwatch-test}
mirror=${OPENWATCH_TEST_MIRROR:-http://deb.debian.org/debian}
check=no
if [ "${1:-}" = --check ]; then
	check=yes
	shift
fi
majors=${*:-13 17 18}

# The suite that ships each major as its default server.
suite() {
	case $1 in
	13) echo bullseye ;;
	17) echo trixie ;;
	18) echo sid ;;
	*) return 1 ;;
	esac
}

# What each root holds besides the server (18 also runs the reflink tests on
# loop-mounted XFS and btrfs, whose tools must be inside the root).
packages() {
	case $1 in
	18) echo "postgresql-$1 postgresql-client-$1 xfsprogs btrfs-progs e2fsprogs" ;;
	*) echo "postgresql-$1 postgresql-client-$1" ;;
	esac
}

marker=.openwatch-test-root

has_server() {
	[ -x "$1/usr/lib/postgresql/$2/bin/initdb" ] && [ -x "$1/usr/lib/postgresql/$2/bin/pg_dump" ]
}

missing=''
for m in $majors; do
	suite "$m" >/dev/null || { echo "pg-roots: no suite known for PostgreSQL $m (known: 13 17 18)" >&2; exit 2; }
	{ [ -f "$cache/pg-$m/$marker" ] && has_server "$cache/pg-$m" "$m"; } || missing="$missing $m"
done
[ -z "$missing" ] && exit 0
if [ "$check" = yes ] || [ "$(id -u)" -ne 0 ]; then
	echo "make test: the PostgreSQL test roots for$missing are missing or incomplete in $cache" >&2
	env=''
	[ "$cache" = /var/cache/openwatch-test ] || env="OPENWATCH_TEST_CACHE=$cache "
	echo "build them with: sudo ${env}sh scripts/pg-roots.sh$missing   (or run make test as root)" >&2
	exit 1
fi

for m in $missing; do
	start=$(date +%s)
	root=$cache/pg-$m
	tmp=$root.partial
	echo "pg-roots: building $root ($(suite "$m"), $(packages "$m"))" >&2
	rm -rf "$tmp"
	mkdir -p "$cache"
	debootstrap --variant=minbase "$(suite "$m")" "$tmp" "$mirror" >"$cache/pg-$m.log" 2>&1 || {
		echo "pg-roots: debootstrap $(suite "$m") failed; its log: $cache/pg-$m.log" >&2
		exit 1
	}
	# Nothing installed into the root may start a service on this machine.
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 0755 "$tmp/usr/sbin/policy-rc.d"
	mkdir -p "$tmp/openwatch-test"
	# shellcheck disable=SC2016 # expanded by the inner shell
	if ! unshare -m sh -c '
		mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" &&
		chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends $2' sh "$tmp" "$(packages "$m")" >>"$cache/pg-$m.log" 2>&1; then
		echo "pg-roots: installing $(packages "$m") into the $(suite "$m") root failed; its log: $cache/pg-$m.log" >&2
		exit 1
	fi
	chroot "$tmp" apt-get clean
	has_server "$tmp" "$m" || { echo "pg-roots: $tmp has no PostgreSQL $m server after the install; its log: $cache/pg-$m.log" >&2; exit 1; }
	date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/$marker"
	rm -rf "$root"
	mv "$tmp" "$root"
	echo "pg-roots: built $root in $(($(date +%s) - start))s" >&2
done
