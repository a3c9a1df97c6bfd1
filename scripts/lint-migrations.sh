#!/bin/sh
# make lint: checks the migrations in DIR with squawk (SQUAWK) and .squawk.toml.
#
#   sh scripts/lint-migrations.sh SQUAWK DIR
#
# Each migration's up and down sections are linted apart, each as dbmate runs
# it: in a transaction unless its own "-- migrate:up|down" line says
# transaction:false. The other section's lines are blanked, so the line
# numbers are the file's. A down section's job is to drop what its up section
# created: DOWN_RULES do not apply there. A down section without a statement
# is a migration without a way down (openwatch migrate --to refuses to cross
# it): it fails unless the migration says why, in its down section:
#   -- no-way-down -- REASON
# A rule is waived only in the migration, one statement at a time, with a
# reason:
#   -- squawk-ignore RULE -- REASON
set -u

squawk=$1
dir=$2
DOWN_RULES='ban-drop-column, ban-drop-table'

rc=0
set -- "$dir"/*.sql
if [ ! -e "$1" ]; then
	echo "make lint: no migrations in $dir" >&2
	exit 1
fi

if grep -HnE 'squawk-ignore' "$@" | grep -vE 'squawk-ignore(-file)?[[:space:]]+[a-z0-9-]+(,[[:space:]]*[a-z0-9-]+)*[[:space:]]+--[[:space:]]*[^[:space:]]'; then
	echo "make lint: the squawk-ignore lines above give no reason; write: -- squawk-ignore RULE -- REASON" >&2
	rc=1
fi

# in_tx LINE: squawk's option for a section whose directive line is LINE.
in_tx() {
	case $1 in
	*transaction:false*) echo --no-assume-in-transaction ;;
	*) echo --assume-in-transaction ;;
	esac
}

# lint_section FILE OPTION: squawk on the section on stdin, reported as FILE.
# squawk's gcc reporter counts lines from 0; they are printed from 1, as
# editors and grep -n count them.
lint_section() {
	out=$("$squawk" --config .squawk.toml --reporter gcc "$2" --stdin-filepath "$1")
	st=$?
	[ -z "$out" ] || printf '%s\n' "$out" | awk -v f="$1:" '
		index($0, f) == 1 {
			rest = substr($0, length(f) + 1)
			n = index(rest, ":")
			line = substr(rest, 1, n - 1)
			if (line ~ /^[0-9]+$/) { print f (line + 1) substr(rest, n); next }
		}
		{ print }'
	return "$st"
}

for f in "$@"; do
	down=$(grep -nE '^--[[:space:]]*migrate:down' "$f" | head -n 1 | cut -d: -f1)
	if [ -z "$down" ]; then
		echo "$f: no -- migrate:down section (dbmate refuses the file); add one that drops what the up section creates" >&2
		rc=1
		continue
	fi
	upline=$(grep -E '^--[[:space:]]*migrate:up' "$f" | head -n 1)
	downline=$(sed -n "${down}p" "$f")
	awk -v d="$down" 'NR >= d { print ""; next } { print }' "$f" |
		lint_section "$f" "$(in_tx "$upline")" || rc=1
	awk -v d="$down" -v rules="$DOWN_RULES" 'NR == 1 && d > 1 { print "-- squawk-ignore-file " rules; next } NR < d { print ""; next } { print }' "$f" |
		lint_section "$f" "$(in_tx "$downline")" || rc=1
	if ! awk -v d="$down" 'NR > d' "$f" | grep -qvE '^[[:space:]]*(--.*)?$' &&
		! awk -v d="$down" 'NR > d' "$f" | grep -qE '^--[[:space:]]*no-way-down[[:space:]]+--[[:space:]]*[^[:space:]]'; then
		echo "$f:$down: the down section has no statement: no way down (openwatch migrate --to cannot go back past it; only a restore point can)." \
			"Write the statements that undo the up section, or say why there are none in the down section: -- no-way-down -- REASON" >&2
		rc=1
	fi
done

if [ "$rc" -ne 0 ]; then
	echo "make lint: fix the migrations named above, or waive a rule for one statement in the migration itself: -- squawk-ignore RULE -- REASON" >&2
fi
exit "$rc"
