#!/bin/sh
# Checks that the system tools the tests use are installed. As root, installs
# the missing ones with apt-get; otherwise fails listing them. A test never
# skips because a tool is missing: this script runs first.
set -eu

# command  Debian package
need='
initdb:postgresql
psql:postgresql-client
pg_dump:postgresql-client
pg_restore:postgresql-client
rpm:rpm
rpm2cpio:rpm2cpio
dpkg-deb:dpkg
shellcheck:shellcheck
dash:dash
busybox:busybox
posh:posh
lintian:lintian
rpmlint:rpmlint
runuser:util-linux
unshare:util-linux
node:nodejs
npm:npm
nsenter:util-linux
systemd-nspawn:systemd-container
systemctl:systemd
journalctl:systemd
apt-get:apt
pg_createcluster:postgresql-common
pg_lsclusters:postgresql-common
debootstrap:debootstrap
chroot:coreutils
dnf:dnf
createrepo_c:createrepo-c
apt-ftparchive:apt-utils
gpg:gnupg
gpgv:gpgv
promtool:prometheus
cpio:cpio
strace:strace
dpkg-scanpackages:dpkg-dev
unattended-upgrade:unattended-upgrades
'

missing=''
for pair in $need; do
	cmd=${pair%%:*}
	pkg=${pair#*:}
	if [ "$cmd" = initdb ]; then
		ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && continue
	elif command -v "$cmd" >/dev/null 2>&1; then
		continue
	fi
	case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
done
id postgres >/dev/null 2>&1 || case " $missing " in *" postgresql "*) ;; *) missing="$missing postgresql" ;; esac

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "make test: missing system packages:$missing" >&2
	echo "install them with: sudo apt-get install$missing   (or run make test as root)" >&2
	exit 1
fi
echo "make test: installing$missing with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is wanted
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# promtool comes only with Debian's prometheus package, whose server the tests
# do not want: the booted test roots are copies of this machine, and would
# start it.
case " $missing " in *" prometheus "*)
	systemctl disable prometheus.service >/dev/null 2>&1 || true ;;
esac
# Debian's postgresql package creates and starts a cluster; the tests start
# their own servers and need none running.
if command -v pg_lsclusters >/dev/null 2>&1; then
	pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
		pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
	done
fi
