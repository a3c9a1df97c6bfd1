// Package journal keeps the upgrade journal: what the last package upgrade
// did, how it ended and the one command that recovers. The binary is its
// only writer (the upgrade helper and the gate pass what they observed as
// arguments); it lives in a directory only root can write, is replaced
// whole by a rename, and every value read back is validated against what it
// may be. Nothing in it is ever sourced by a shell.
package journal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/renameio/v2"

	"github.com/openwatch/openwatch/internal/envfile"
	"github.com/openwatch/openwatch/internal/fsync"
)

// The journal's keys. docs/INTERFACES.md lists them for readers (the dnf
// plugin, migrate --status, monitoring).
const (
	Outcome       = "OUTCOME"         // succeeded, in-progress, or how the upgrade failed
	Phase         = "PHASE"           // check, preflight, stop, migrate, start, finished
	ServiceBefore = "SERVICE_BEFORE"  // running or stopped: whether the service runs again afterwards
	ServiceLeft   = "SERVICE_STOPPED" // yes: the upgrade left a service that ran stopped
	SchemaChanged = "SCHEMA_CHANGED"  // yes, no or unknown: whether the last attempt changed the schema
	StoppedAt     = "STOPPED_AT"      // when the upgrade stopped the service (monotonic µs, or unknown)
	UnitFileState = "UNIT_FILE_STATE" // the unit's enablement when the upgrade stopped it
	BootID        = "BOOT_ID"         // the boot on which the attempt ran
	Recovery      = "RECOVERY"        // the one command that recovers
	Message       = "MESSAGE"         // the one-line reason
	Updated       = "UPDATED"         // when the journal was last written (UTC)
	RestorePoint  = "RESTORE_POINT"   // the restore point the unfinished upgrade took or reused
	// RestorePointState is what the database server said about the
	// database at the end of the last attempt that used RestorePoint: the
	// restore point may be reused only while the database still says the
	// same (nothing but that attempt's own migrations changed it since it
	// was taken).
	RestorePointState = "RESTORE_POINT_STATE"
	Failure           = "FAILURE" // one line: how the attempt's migrate failed
	// A transaction the gate refused (the installed package stays): kept
	// beside the last upgrade's outcome, which it does not change.
	GateRefused  = "GATE_REFUSED"  // when (UTC)
	GateMessage  = "GATE_MESSAGE"  // why
	GateRecovery = "GATE_RECOVERY" // the command to run once the cause is fixed
)

var (
	wordRE  = regexp.MustCompile(`^[a-z][a-z-]{0,39}$`)
	numRE   = regexp.MustCompile(`^(unknown|[0-9]{1,20})$`)
	bootRE  = regexp.MustCompile(`^[0-9a-f-]{32,36}$`)
	timeRE  = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$`)
	stateRE = regexp.MustCompile(`^[0-9A-Za-z:./+-]{1,200}$`)
	rpRE    = regexp.MustCompile(`^(/[A-Za-z0-9._+/-]+|[a-z_][a-z0-9_]{0,62})$`)
)

// valid holds what each key's value may be; a value that fails is dropped
// on read, and refused on write.
var valid = map[string]func(string) bool{
	Outcome:           wordRE.MatchString,
	Phase:             wordRE.MatchString,
	ServiceBefore:     oneOf("running", "stopped"),
	ServiceLeft:       oneOf("yes", "no"),
	SchemaChanged:     oneOf("yes", "no", "unknown"),
	StoppedAt:         numRE.MatchString,
	UnitFileState:     wordRE.MatchString,
	BootID:            bootRE.MatchString,
	Recovery:          oneLine,
	Message:           oneLine,
	Updated:           timeRE.MatchString,
	RestorePoint:      func(s string) bool { return len(s) <= 4000 && rpRE.MatchString(s) && !strings.Contains(s, "/../") },
	RestorePointState: stateRE.MatchString,
	Failure:           oneLine,
	GateRefused:       timeRE.MatchString,
	GateMessage:       oneLine,
	GateRecovery:      oneLine,
}

// order is the order of the keys in the file.
var order = []string{Outcome, Phase, ServiceBefore, ServiceLeft, SchemaChanged, StoppedAt, UnitFileState, BootID,
	Recovery, Message, Updated, RestorePoint, RestorePointState, Failure, GateRefused, GateMessage, GateRecovery}

func oneOf(words ...string) func(string) bool {
	return func(s string) bool {
		for _, w := range words {
			if s == w {
				return true
			}
		}
		return false
	}
}

func oneLine(s string) bool {
	return len(s) <= 2000 && !strings.ContainsAny(s, "\x00\r\n")
}

// Valid reports whether v may be the value of key.
func Valid(key, v string) bool {
	ok := valid[key]
	return ok != nil && (v == "" || ok(v))
}

// maxSize bounds what is read: a journal is a few hundred bytes.
const maxSize = 64 << 10

// Read returns the journal's valid entries: an empty map when there is none.
// It never follows a symbolic link and reads only a regular file.
func Read(path string) (map[string]string, error) {
	b, err := readPlain(path, -1)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return map[string]string{}, err
	}
	return parse(b), nil
}

func parse(b []byte) map[string]string {
	vars, _ := envfile.Parse(string(b))
	out := map[string]string{}
	for k, v := range vars {
		if Valid(k, v) && v != "" {
			out[k] = v
		}
	}
	return out
}

// readPlain reads a regular file without following a link at path; with
// owner >= 0 the file must belong to that uid.
func readPlain(path string, owner int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link: not read", path)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: not read", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && owner >= 0 && (int(st.Uid) != owner || st.Nlink != 1) {
		// A second name (a hard link) could be another user's alias of it.
		return nil, fmt.Errorf("%s belongs to uid %d with %d names, not uid %d with one: not read", path, st.Uid, st.Nlink, owner)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: not read", path, maxSize)
	}
	return b, nil
}

// Header is the journal's first line.
const Header = "# openwatch upgrade journal, written by openwatch (the only writer); shown by: openwatch migrate --status"

// Write replaces the journal with vars: a temporary file in the journal's
// directory renamed into place (never through a link), then the directory
// is flushed. The file is mode 0640, readable by group (the service's
// group: its start guard names the failure and the recovery command) when
// that group exists. An invalid value is an error and nothing is written.
func Write(path string, vars map[string]string, group string) error {
	var b strings.Builder
	b.WriteString(Header + "\n")
	for k := range vars {
		if valid[k] == nil {
			return fmt.Errorf("journal: unknown key %s", k)
		}
	}
	for _, k := range order {
		v, ok := vars[k]
		if !ok || v == "" {
			continue
		}
		if !Valid(k, v) {
			return fmt.Errorf("journal: invalid %s value %q", k, v)
		}
		b.WriteString(k + "=" + quote(v) + "\n")
	}
	dir := filepath.Dir(path)
	t, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithPermissions(0o640))
	if err != nil {
		return err
	}
	defer t.Cleanup()
	if g := groupID(group); g >= 0 && os.Geteuid() == 0 {
		if err := t.Chown(0, g); err != nil {
			return err
		}
	}
	if err := t.Chmod(0o640); err != nil {
		return err
	}
	if _, err := t.WriteString(b.String()); err != nil {
		return err
	}
	if err := t.CloseAtomicallyReplace(); err != nil {
		return err
	}
	return fsync.Dir(dir)
}

func groupID(name string) int {
	if name == "" {
		return -1
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1
	}
	return n
}

// quote quotes s for a systemd EnvironmentFile value on one line.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "`", "\\`").Replace(s) + `"`
}

// ImportLegacy returns the entries of a journal an earlier release kept in
// the service account's directory, when that file is a regular file owned
// by root (the account could have replaced anything else); nil otherwise.
// Only the keys that say how the last upgrade ended are taken, each
// validated: a retry after the upgrade to this release resumes it.
func ImportLegacy(path string) (map[string]string, error) {
	b, err := readPlain(path, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	old := parse(b)
	out := map[string]string{}
	for _, k := range []string{Outcome, Phase, ServiceBefore, StoppedAt, UnitFileState, BootID, Recovery, Message, Updated, Failure} {
		if v, ok := old[k]; ok {
			out[k] = v
		}
	}
	// A restore point recorded there may have been named by the account:
	// it is never reused, only listed by backup --list as any other.
	return out, nil
}
