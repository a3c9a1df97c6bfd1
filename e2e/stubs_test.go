package e2e

import (
	"fmt"
	"strings"

	"github.com/openwatch/openwatch/internal/defaults"
)

// Paths inside a disposable root where the stand-ins keep what they saw.
const (
	eventsLog      = "/var/log/e2e-events.log" // systemctl calls and pg_* shim calls, in order
	systemctlState = "/var/lib/e2e-systemctl"  // <unit>.active files
	// The installed names and paths, as the spec names them.
	applianceUnit   = defaults.AppUnit
	cleanupTimer    = defaults.CleanupTimer
	cleanupService  = defaults.CleanupService
	exportUnit      = defaults.ExportUnit
	secretsPath     = defaults.SecretsPath
	upgradeConfPath = defaults.ConfigPath
	backupDir       = defaults.BackupDir
	journalPath     = defaults.JournalPath
	helperPath      = defaults.UpgradeHelper
	binaryPath      = defaults.Binary
	dropInDir       = "/usr/lib/systemd/system/openwatch.service.d"
)

// systemctlStub stands in for systemd's systemctl inside a disposable root.
// It appends every call to the events log, keeps each unit's active state in
// a file, and keeps the enabled state the way systemd does: as symlinks in
// /etc/systemd/system/<target>.wants/, so deb-systemd-helper (which makes and
// removes those links itself) and deb-systemd-invoke (which asks is-enabled
// before starting) see a consistent picture. When the appliance unit is
// started or stopped it also records what `openwatch migrate --check` says at
// that moment, so a test can tell a stop before the migration from one after.
const systemctlStub = `#!/bin/sh
# e2e stand-in for systemctl: records calls, answers from recorded state.
state=` + systemctlState + `
log=` + eventsLog + `
mkdir -p "$state"
{ printf 'systemctl'; for a in "$@"; do printf ' %s' "$a"; done; printf '\n'; } >>"$log"

quiet=
now=
verb=
units=
prop=
value=
while [ $# -gt 0 ]; do
	case $1 in
	-q | --quiet) quiet=1 ;;
	--now) now=1 ;;
	--value) value=1 ;;
	--version) echo 'systemd 252 (252.e2e-stub)'; exit 0 ;;
	-p | --property) prop=$2; shift ;;
	-t | --type | --state | -H | --host | -M | --machine | --root | --job-mode | -n | --lines | -o | --output | --preset-mode) shift ;;
	--) ;;
	-*) ;;
	*)
		if [ -z "$verb" ]; then
			verb=$1
		else
			case $1 in *.*) u=$1 ;; *) u=$1.service ;; esac
			units="$units $u"
		fi
		;;
	esac
	shift
done

unit_file() {
	for d in /etc/systemd/system /run/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
		if [ -f "$d/$1" ]; then
			echo "$d/$1"
			return 0
		fi
	done
	return 1
}

is_enabled() {
	for l in /etc/systemd/system/*.wants/"$1"; do
		[ -L "$l" ] && return 0
	done
	return 1
}

has_install() {
	f=$(unit_file "$1") || return 1
	grep -q '^WantedBy=' "$f"
}

do_enable() {
	f=$(unit_file "$1") || { echo "Failed to enable unit: Unit file $1 does not exist." >&2; return 1; }
	for t in $(sed -n 's/^WantedBy=//p' "$f"); do
		mkdir -p "/etc/systemd/system/$t.wants"
		ln -sf "$f" "/etc/systemd/system/$t.wants/$1"
	done
}

do_disable() {
	for l in /etc/systemd/system/*.wants/"$1"; do
		if [ -L "$l" ]; then rm -f "$l"; fi
	done
}

guard_note() {
	if [ "$1" = ` + applianceUnit + ` ] && [ -x /usr/bin/openwatch ]; then
		/usr/bin/openwatch migrate --check >/dev/null 2>&1
		echo "e2e-note $2 $1 migrate-check=$?" >>"$log"
	fi
}

# The package's start guard, as systemd runs it: the drop-in's ExecStartPre=
# before a start of the appliance; a failure refuses the start.
start_guard() {
	[ "$1" = ` + applianceUnit + ` ] || return 0
	for f in ` + dropInDir + `/*.conf; do
		[ -f "$f" ] || continue
		pre=$(sed -n 's/^ExecStartPre=//p' "$f")
		[ -n "$pre" ] || continue
		# shellcheck disable=SC2086 # the unit file's words
		$pre >/dev/null 2>&1 || return 1
	done
}

do_start() {
	unit_file "$1" >/dev/null || { echo "Failed to start $1: Unit $1 not found." >&2; return 5; }
	guard_note "$1" start
	if ! start_guard "$1"; then
		echo "e2e-note refused start $1" >>"$log"
		echo "Job for $1 failed because the control process exited with error code." >&2
		return 1
	fi
	: >"$state/$1.active"
}

do_stop() {
	if [ ! -e "$state/$1.active" ] && ! unit_file "$1" >/dev/null; then
		echo "Failed to stop $1: Unit $1 not loaded." >&2
		return 5
	fi
	guard_note "$1" stop
	rm -f "$state/$1.active"
	date +%s%N >"$state/$1.inactive-since"
}

rc=0
case $verb in
is-active)
	for u in $units; do
		if [ -e "$state/$u.active" ]; then s=active; else s=inactive; rc=3; fi
		[ -n "$quiet" ] || echo "$s"
	done
	;;
is-failed)
	for u in $units; do [ -n "$quiet" ] || echo inactive; done
	rc=1
	;;
is-enabled)
	for u in $units; do
		if is_enabled "$u"; then s=enabled
		elif ! unit_file "$u" >/dev/null; then s=not-found; rc=4
		elif has_install "$u"; then s=disabled; rc=1
		else s=static; fi
		[ -n "$quiet" ] || echo "$s"
	done
	;;
start | restart | reload-or-restart)
	for u in $units; do do_start "$u" || rc=$?; done
	;;
try-restart | condrestart | try-reload-or-restart | reload-or-try-restart | force-reload)
	for u in $units; do
		if [ -e "$state/$u.active" ]; then do_start "$u" || rc=$?; fi
	done
	;;
reload)
	for u in $units; do [ -e "$state/$u.active" ] || { echo "Job for $u failed: not active." >&2; rc=1; }; done
	;;
stop | kill)
	for u in $units; do do_stop "$u" || rc=$?; done
	;;
enable | reenable | preset)
	for u in $units; do
		do_enable "$u" || rc=1
		if [ -n "$now" ]; then do_start "$u" || rc=$?; fi
	done
	;;
disable)
	for u in $units; do
		do_disable "$u"
		if [ -n "$now" ]; then rm -f "$state/$u.active"; fi
	done
	;;
status)
	for u in $units; do [ -e "$state/$u.active" ] || rc=3; done
	;;
show)
	for u in $units; do
		if [ -e "$state/$u.active" ]; then a=active; else a=inactive; fi
		since=$(cat "$state/$u.inactive-since" 2>/dev/null || echo 0)
		for p in ActiveState InactiveEnterTimestampMonotonic; do
			[ -z "$prop" ] || [ "$prop" = "$p" ] || continue
			case $p in ActiveState) v=$a ;; *) v=$since ;; esac
			if [ -n "$value" ]; then echo "$v"; else echo "$p=$v"; fi
		done
	done
	;;
*) ;;
esac
exit $rc
`

// systemdRunStub stands in for systemd-run: it logs the call, drops the
// options and runs the command in the foreground.
const systemdRunStub = `#!/bin/sh
{ printf 'systemd-run'; for a in "$@"; do printf ' %s' "$a"; done; printf '\n'; } >>` + eventsLog + `
while [ $# -gt 0 ]; do
	case $1 in
	--) shift; break ;;
	-*) shift ;;
	*) break ;;
	esac
done
exec "$@"
`

// pgShim records a PostgreSQL client tool's argv and the names (never the
// values) of its environment, then runs the real tool.
func pgShim(tool, real string) string {
	return fmt.Sprintf(`#!/bin/sh
# e2e shim: record argv and environment names, then run the real %[1]s.
# One printf, one write: concurrent shims do not interleave their lines.
line=%[1]s
for a in "$@"; do line="$line $a"; done
names=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | tr '\n' ' ')
printf '%%s\n%%s-env %%s\n' "$line" %[1]s "$names" >>%[3]s
exec %[2]s "$@"
`, tool, real, eventsLog)
}

// applianceUnitFile is the appliance's own unit, which another package ships
// on a real machine; the drop-in from the openwatch package targets it.
const applianceUnitFile = `[Unit]
Description=openwatch appliance (e2e stand-in)

[Service]
EnvironmentFile=-/etc/openwatch/secrets.env
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
`

// call is one recorded systemctl invocation.
type call struct {
	Raw   string
	Verb  string
	Units []string
}

// systemctlCalls parses the events log's systemctl lines the way the stub does.
func systemctlCalls(events string) []call {
	var out []call
	for _, line := range strings.Split(events, "\n") {
		if !strings.HasPrefix(line, "systemctl ") {
			continue
		}
		f := strings.Fields(line)[1:]
		c := call{Raw: line}
		for i := 0; i < len(f); i++ {
			a := f[i]
			switch {
			case a == "-p" || a == "--property" || a == "-t" || a == "--type" || a == "--state" || a == "-H" || a == "--host" ||
				a == "-M" || a == "--machine" || a == "--root" || a == "--job-mode" || a == "-n" || a == "--lines" ||
				a == "-o" || a == "--output" || a == "--preset-mode":
				i++
			case strings.HasPrefix(a, "-"):
			case c.Verb == "":
				c.Verb = a
			default:
				if !strings.Contains(a, ".") {
					a += ".service"
				}
				c.Units = append(c.Units, a)
			}
		}
		out = append(out, c)
	}
	return out
}

func (c call) has(unit string) bool {
	for _, u := range c.Units {
		if u == unit {
			return true
		}
	}
	return false
}
