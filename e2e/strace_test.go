package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What root did to the file system during a command, as `strace -f` saw it,
// and which of it happened in a directory the service account can write.
//
// How paths are resolved. strace runs inside the disposable root, so the
// paths it prints are the root's own. With -y strace annotates every file
// descriptor with the path the kernel has for it, AT_FDCWD included
// (`openat(AT_FDCWD</var/lib/dpkg>, "x", …)` is the caller's working
// directory at that moment), and the result of an open with the file the
// kernel actually opened (`= 3</etc/profile.d/zz.sh>` when the name was a
// link). Calls without a directory descriptor (mkdir, rename, chmod, …) take
// a relative path from the working directory, which no annotation shows:
// it is tracked per process from chdir/fchdir, inherited across
// clone/fork/vfork, and corrected by every AT_FDCWD annotation the process
// prints. The name a call acts on is judged by its directory, resolved
// afterwards through the root's symlinks component by component (never
// through the host's); an open is also judged by the file the kernel says
// it opened.
//
// Who is root. Every process starts as its parent was; setuid, setreuid
// and setresuid change its effective uid. The start guard, which systemd runs
// as the service account, writes in that account's own directory: that is
// the account's business, not root's.
//
// What counts as writing: open/openat/openat2/creat with O_WRONLY, O_RDWR,
// O_CREAT or O_TRUNC; rename (both names); link, symlink, mkdir, mknod (the
// new name); chmod, chown, truncate, utimes, setxattr by path or descriptor.
// Unlinking is allowed in such a directory: unlink and rmdir never follow a
// link at the name they remove, so a planted link loses only itself; but a
// name deeper below it is flagged, because the directories on the way could
// have been replaced by links. Only calls that succeeded count: a refused
// write changed nothing.
//
// Shared sticky directories (/tmp, /var/tmp, /dev/shm, /run/lock: world-
// writable, sticky, not the account's) are writable by the account too, but
// the kernel lets nobody else remove or rename root's entries there. There a
// name root creates exclusively (O_CREAT|O_EXCL, mkdir, link, symlink: they
// fail on an existing name, a planted link included) is root's, and what root
// does afterwards to such a name is allowed; any other write there is flagged.

// traceSyscalls are the calls strace records (x86_64 names).
var traceSyscalls = []string{
	"open", "openat", "openat2", "creat", "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
	"mkdir", "mkdirat", "mknod", "mknodat", "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat",
	"truncate", "ftruncate", "utime", "utimes", "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr",
	"unlink", "unlinkat", "rmdir", "chdir", "fchdir", "clone", "clone3", "fork", "vfork", "execve", "execveat",
	"setuid", "setreuid", "setresuid",
}

// tracedCommand wraps argv in strace, writing the trace to out (a path
// inside the root, in a directory only root can write).
func tracedCommand(out string, argv ...string) []string {
	return append([]string{"strace", "-f", "-qq", "-y", "-s", "4096", "-e", "signal=none",
		"-e", "trace=" + strings.Join(traceSyscalls, ","), "--seccomp-bpf", "-o", out, "--"}, argv...)
}

// syscallLine is one system call as strace printed it, unfinished and
// resumed halves joined.
type syscallLine struct {
	pid  int
	name string
	args []string
	ret  string
	text string
}

func (s syscallLine) ok() bool {
	return s.ret != "" && !strings.HasPrefix(s.ret, "-1") && !strings.HasPrefix(s.ret, "?")
}

var (
	traceLineRE = regexp.MustCompile(`^(\d+) +(.*)$`)
	resumedRE   = regexp.MustCompile(`^<\.\.\. [a-z0-9_]+ resumed>`)
	callNameRE  = regexp.MustCompile(`^([a-z0-9_]+)\(`)
	fdArgRE     = regexp.MustCompile(`^(AT_FDCWD|-?\d+)(?:<(.*)>)?$`)
)

// parseTrace reads strace's -f -o output ("PID call(args) = result").
func parseTrace(text string) (calls []syscallLine, unparsed []string) {
	pending := map[int]string{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		m := traceLineRE.FindStringSubmatch(line)
		if m == nil {
			unparsed = append(unparsed, line)
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		rest := m[2]
		if r, ok := strings.CutSuffix(rest, " <unfinished ...>"); ok {
			pending[pid] = r
			continue
		}
		if loc := resumedRE.FindStringIndex(rest); loc != nil {
			rest = pending[pid] + rest[loc[1]:]
			delete(pending, pid)
		}
		c, ok := parseCall(pid, rest)
		if !ok {
			unparsed = append(unparsed, line)
			continue
		}
		calls = append(calls, c)
	}
	// A call that never returned (its process was killed in it) may still
	// have acted: keep it, as having succeeded.
	for pid, rest := range pending {
		if c, ok := parseCall(pid, rest+") = 0 (unfinished)"); ok {
			calls = append(calls, c)
		}
	}
	return calls, unparsed
}

func parseCall(pid int, s string) (syscallLine, bool) {
	m := callNameRE.FindStringSubmatch(s)
	if m == nil {
		return syscallLine{}, false
	}
	args, tail, ok := splitArgs(s[len(m[0]):])
	if !ok {
		return syscallLine{}, false
	}
	ret, found := strings.CutPrefix(strings.TrimSpace(tail), "= ")
	if !found {
		return syscallLine{}, false
	}
	return syscallLine{pid: pid, name: m[1], args: args, ret: ret, text: s}, true
}

// splitArgs splits strace's argument list (after the opening parenthesis)
// at the top-level commas: quoted strings, fd annotations <…> and nested
// brackets are kept whole. tail is what follows the closing parenthesis.
func splitArgs(s string) (args []string, tail string, ok bool) {
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			i = j
		case c == '<' && i > 0 && (s[i-1] >= '0' && s[i-1] <= '9' || s[i-1] == 'D'):
			j := strings.IndexByte(s[i:], '>')
			if j < 0 {
				return nil, "", false
			}
			i += j
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			if depth == 0 {
				if a := strings.TrimSpace(s[start:i]); a != "" || len(args) > 0 {
					args = append(args, a)
				}
				return args, s[i+1:], c == ')'
			}
			depth--
		case c == ',' && depth == 0:
			args = append(args, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return nil, "", false
}

// cString decodes a quoted strace string ("…", C escapes); NULL is "".
func cString(a string) string {
	a = strings.TrimSuffix(a, "...")
	if len(a) < 2 || a[0] != '"' || a[len(a)-1] != '"' {
		return ""
	}
	a = a[1 : len(a)-1]
	var b strings.Builder
	for i := 0; i < len(a); i++ {
		if a[i] != '\\' || i+1 == len(a) {
			b.WriteByte(a[i])
			continue
		}
		i++
		switch c := a[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'v':
			b.WriteByte('\v')
		case 'f':
			b.WriteByte('\f')
		case 'x':
			if i+2 < len(a) {
				if n, err := strconv.ParseUint(a[i+1:i+3], 16, 8); err == nil {
					b.WriteByte(byte(n))
					i += 2
					continue
				}
			}
			b.WriteByte(c)
		default:
			if c >= '0' && c <= '7' {
				j := i
				for j < len(a) && j < i+3 && a[j] >= '0' && a[j] <= '7' {
					j++
				}
				n, _ := strconv.ParseUint(a[i:j], 8, 8)
				b.WriteByte(byte(n))
				i = j - 1
				continue
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

// fdPath is the path strace annotated a descriptor argument with ("" when
// none), and whether the argument is AT_FDCWD.
func fdPath(a string) (p string, cwd bool) {
	m := fdArgRE.FindStringSubmatch(a)
	if m == nil {
		return "", false
	}
	return strings.TrimSuffix(m[2], " (deleted)"), m[1] == "AT_FDCWD"
}

// fsOp is one thing a process did to a name.
type fsOp struct {
	kind      string // open-write, rename-from, rename-to, link, symlink, mkdir, mknod, chmod, chown, truncate, utime, xattr, unlink, rmdir
	name      string // absolute path of the name acted on, as the process named it
	opened    string // for an open: the file the kernel opened (after links)
	exclusive bool   // the call fails on an existing name (a planted link included)
	euid      int
	pid       int
	proc      string // the process and its ancestry, for the report
	call      string
}

type traceProc struct {
	parent int
	euid   int
	cwd    string
	exe    string
}

// fsOps replays the calls: every successful change to a name, with the
// effective uid and working directory of the process that made it.
func fsOps(calls []syscallLine) []fsOp {
	parentOf := map[int]int{}
	for _, c := range calls {
		if isFork(c.name) && c.ok() {
			if child, err := strconv.Atoi(strings.Fields(c.ret)[0]); err == nil {
				parentOf[child] = c.pid
			}
		}
	}
	procs := map[int]*traceProc{}
	ensure := func(pid int) *traceProc {
		if p := procs[pid]; p != nil {
			return p
		}
		p := &traceProc{parent: parentOf[pid], cwd: "/"}
		if par := procs[p.parent]; par != nil {
			p.euid, p.cwd, p.exe = par.euid, par.cwd, par.exe
		}
		procs[pid] = p
		return p
	}
	describe := func(pid int) string {
		var chain []string
		for i := 0; pid != 0 && i < 12; i++ {
			p := procs[pid]
			if p == nil {
				break
			}
			if len(chain) == 0 || chain[len(chain)-1] != p.exe {
				chain = append(chain, p.exe)
			}
			pid = p.parent
		}
		return strings.Join(chain, " ← ")
	}
	var ops []fsOp
	for _, c := range calls {
		p := ensure(c.pid)
		a := func(i int) string {
			if i < len(c.args) {
				return c.args[i]
			}
			return ""
		}
		// abs resolves a path argument against a directory argument ("" for
		// the calls that take none: the working directory).
		abs := func(dirArg, pathArg string) string {
			name := cString(pathArg)
			d, isCwd := fdPath(dirArg)
			if isCwd && d != "" {
				p.cwd = d
			}
			switch {
			case strings.HasPrefix(name, "/"):
				return path.Clean(name)
			case d != "":
				return path.Join(d, name)
			case dirArg == "" || isCwd:
				return path.Join(p.cwd, name)
			}
			return "?" + dirArg + "/" + name
		}
		fdName := func(arg string) string {
			d, _ := fdPath(arg)
			return d
		}
		add := func(kind, name string, exclusive bool) {
			if !c.ok() || name == "" {
				return
			}
			op := fsOp{kind: kind, name: name, exclusive: exclusive, euid: p.euid, pid: c.pid, proc: describe(c.pid), call: c.text}
			if kind == "open-write" {
				op.opened, _ = fdPath(strings.Fields(c.ret)[0])
			}
			ops = append(ops, op)
		}
		openFlags := func(flags string, name string) {
			if f, ok := strings.CutPrefix(flags, "{flags="); ok { // openat2's struct
				flags, _, _ = strings.Cut(f, ",")
			}
			set := map[string]bool{}
			for _, f := range strings.Split(flags, "|") {
				set[strings.TrimSpace(f)] = true
			}
			if set["O_WRONLY"] || set["O_RDWR"] || set["O_CREAT"] || set["O_TRUNC"] {
				add("open-write", name, set["O_CREAT"] && set["O_EXCL"])
			}
		}
		switch c.name {
		case "open":
			openFlags(a(1), abs("", a(0)))
		case "openat", "openat2":
			openFlags(a(2), abs(a(0), a(1)))
		case "creat":
			add("open-write", abs("", a(0)), false)
		case "rename":
			add("rename-from", abs("", a(0)), false)
			add("rename-to", abs("", a(1)), false)
		case "renameat", "renameat2":
			add("rename-from", abs(a(0), a(1)), false)
			add("rename-to", abs(a(2), a(3)), strings.Contains(a(4), "RENAME_NOREPLACE"))
		case "link":
			add("link", abs("", a(1)), true)
		case "linkat":
			add("link", abs(a(2), a(3)), true)
		case "symlink":
			add("symlink", abs("", a(1)), true)
		case "symlinkat":
			add("symlink", abs(a(1), a(2)), true)
		case "mkdir":
			add("mkdir", abs("", a(0)), true)
		case "mkdirat":
			add("mkdir", abs(a(0), a(1)), true)
		case "mknod":
			add("mknod", abs("", a(0)), true)
		case "mknodat":
			add("mknod", abs(a(0), a(1)), true)
		case "chmod":
			add("chmod", abs("", a(0)), false)
		case "chown", "lchown":
			add("chown", abs("", a(0)), false)
		case "fchmodat", "fchownat":
			kind := "chmod"
			if c.name == "fchownat" {
				kind = "chown"
			}
			if cString(a(1)) == "" {
				add(kind, fdName(a(0)), false)
			} else {
				add(kind, abs(a(0), a(1)), false)
			}
		case "fchmod":
			add("chmod", fdName(a(0)), false)
		case "fchown":
			add("chown", fdName(a(0)), false)
		case "ftruncate":
			add("truncate", fdName(a(0)), false)
		case "fsetxattr":
			add("xattr", fdName(a(0)), false)
		case "truncate":
			add("truncate", abs("", a(0)), false)
		case "setxattr", "lsetxattr":
			add("xattr", abs("", a(0)), false)
		case "utime", "utimes":
			add("utime", abs("", a(0)), false)
		case "futimesat":
			add("utime", abs(a(0), a(1)), false)
		case "utimensat":
			if a(1) == "NULL" {
				add("utime", fdName(a(0)), false)
			} else {
				add("utime", abs(a(0), a(1)), false)
			}
		case "unlink":
			add("unlink", abs("", a(0)), false)
		case "rmdir":
			add("rmdir", abs("", a(0)), false)
		case "unlinkat":
			kind := "unlink"
			if strings.Contains(a(2), "AT_REMOVEDIR") {
				kind = "rmdir"
			}
			add(kind, abs(a(0), a(1)), false)
		case "chdir":
			if d := abs("", a(0)); c.ok() {
				p.cwd = d
			}
		case "fchdir":
			if d := fdName(a(0)); c.ok() && d != "" {
				p.cwd = d
			}
		case "execve", "execveat":
			argv := a(1)
			if c.name == "execveat" {
				argv = a(2)
			}
			if c.ok() {
				var words []string
				for _, q := range quotedRE.FindAllString(argv, -1) {
					words = append(words, cString(q))
				}
				p.exe = strings.Join(words, " ")
				if len(p.exe) > 200 {
					p.exe = p.exe[:200] + "…"
				}
			}
		case "setuid", "setreuid", "setresuid":
			if c.ok() {
				i := 0
				if c.name != "setuid" {
					i = 1 // the effective uid
				}
				if u, err := strconv.Atoi(a(i)); err == nil && u >= 0 {
					p.euid = u
				}
			}
		default:
			if isFork(c.name) && c.ok() {
				if child, err := strconv.Atoi(strings.Fields(c.ret)[0]); err == nil && procs[child] == nil {
					ensure(child)
				}
			}
		}
	}
	return ops
}

var quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

func isFork(name string) bool {
	return name == "clone" || name == "clone3" || name == "fork" || name == "vfork"
}

// accountDir is a directory the service account can write (or owns).
type accountDir struct {
	mode  os.FileMode // permission and sticky bits as find prints them
	owner string
}

// accountWritable walks the root as the service account and returns every
// directory it can write or owns (find's -writable asks the kernel, so
// group membership and ACLs count), skipping only /proc, /sys and the
// read-only package mount.
func (r *root) accountWritable(account string) map[string]accountDir {
	r.t.Helper()
	res := r.run(10*time.Minute, "setpriv", "--reuid="+account, "--regid="+account, "--init-groups",
		"find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/e2e-pkgs", ")", "-prune",
		"-o", "-type", "d", "(", "-writable", "-o", "-user", account, ")", "-printf", `%m %u %p\n`)
	if res.code < 0 {
		r.t.Fatalf("listing the directories %s can write: %v\n%s", account, res.err, res.out)
	}
	dirs := map[string]accountDir{}
	for _, l := range strings.Split(res.out, "\n") {
		f := strings.SplitN(l, " ", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/") {
			continue // find's "Permission denied" for what the account cannot read
		}
		m, err := strconv.ParseUint(f[0], 8, 32)
		if err != nil {
			continue
		}
		mode := os.FileMode(m & 0o777)
		if m&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		dirs[f[2]] = accountDir{mode: mode, owner: f[1]}
	}
	return dirs
}

// resolveDir resolves the symlinks of a directory path inside the root,
// one component at a time (never through the host's /); a component that
// does not exist (any more) ends the resolution.
func (r *root) resolveDir(p string) string {
	if !strings.HasPrefix(p, "/") {
		return p
	}
	parts := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	cur := "/"
	for i, hops := 0, 0; i < len(parts); i++ {
		if parts[i] == "" {
			continue
		}
		next := path.Join(cur, parts[i])
		fi, err := os.Lstat(r.path(next))
		if err != nil {
			return path.Join(append([]string{next}, parts[i+1:]...)...)
		}
		if fi.Mode()&fs.ModeSymlink != 0 && hops < 40 {
			target, err := os.Readlink(r.path(next))
			if err != nil {
				return path.Join(append([]string{next}, parts[i+1:]...)...)
			}
			hops++
			if !path.IsAbs(target) {
				target = path.Join(cur, target)
			}
			parts = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), parts[i+1:]...)
			cur, i = "/", -1
			continue
		}
		cur = next
	}
	return cur
}

// trustJudge decides which of root's changes happened where the service
// account could have planted a link.
type trustJudge struct {
	resolve  func(dir string) string // a directory's path with its symlinks resolved inside the root
	account  string
	writable map[string]accountDir
	created  map[string]bool // names root created exclusively in a shared sticky directory
}

// shared reports a sticky world-writable directory that is not the
// account's.
func (j *trustJudge) shared(dir string) bool {
	d, ok := j.writable[dir]
	return ok && d.mode&fs.ModeSticky != 0 && d.owner != j.account
}

// controlled returns the first of dir and its ancestors that the account
// can write (shared sticky directories aside), "" when none.
func (j *trustJudge) controlled(dir string) string {
	for a := dir; ; a = path.Dir(a) {
		if _, ok := j.writable[a]; ok && !j.shared(a) {
			return a
		}
		if a == "/" || a == "." || a == "" {
			return ""
		}
	}
}

// violation says why op, by root, wrote where the account can write; ""
// when it did not.
func (j *trustJudge) violation(op fsOp) string {
	if op.euid != 0 {
		return ""
	}
	if strings.HasPrefix(op.name, "?") {
		return "a path relative to a descriptor strace could not name: " + op.name
	}
	for _, dir := range uniq(path.Dir(op.name), j.resolve(path.Dir(op.name))) {
		if op.kind == "unlink" || op.kind == "rmdir" {
			// The name itself is never followed; the directories on the way are.
			if dir != "/" {
				if c := j.controlled(path.Dir(dir)); c != "" {
					return fmt.Sprintf("%s below %s, which %s can write (a directory on the way could be its link)", op.kind, c, j.account)
				}
			}
			continue
		}
		if c := j.controlled(dir); c != "" {
			return fmt.Sprintf("%s in %s, which %s can write", op.kind, c, j.account)
		}
		if j.shared(dir) {
			switch {
			case op.exclusive:
				j.created[op.name] = true
			case j.created[op.name]:
			default:
				return fmt.Sprintf("%s of a name root did not create itself in the shared directory %s", op.kind, dir)
			}
		}
	}
	if op.opened != "" && op.opened != op.name {
		if c := j.controlled(path.Dir(op.opened)); c != "" {
			return fmt.Sprintf("%s of %s, which is %s in %s: %s can write there", op.kind, op.name, op.opened, c, j.account)
		}
	}
	return ""
}

func uniq(a, b string) []string {
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

// tracedStep is one traced command and what the trace says root did.
type tracedStep struct {
	name    string
	res     result
	ops     []fsOp
	written []string // every name root changed (sorted), for the report
}

// traceRun runs argv under strace inside the root, the way an operator runs
// it (e.pm), and returns the result and the changes the trace recorded.
func (e *env) traceRun(name string, argv ...string) tracedStep {
	e.t.Helper()
	dir := "/root/e2e-trace"
	if err := os.MkdirAll(e.r.path(dir), 0o700); err != nil {
		e.t.Fatal(err)
	}
	out := fmt.Sprintf("%s/%d.trace", dir, len(e.runs))
	res := e.pm(tracedCommand(out, argv...)...)
	calls, unparsed := parseTrace(e.r.readFile(out))
	if len(calls) == 0 {
		e.t.Fatalf("%s: strace recorded nothing:\n%s", name, res.out)
	}
	if len(unparsed) > 0 {
		e.t.Logf("%s: %d trace lines not understood, e.g. %q", name, len(unparsed), unparsed[0])
		if len(unparsed)*50 > len(calls) {
			e.t.Errorf("%s: too many trace lines not understood (%d of %d)", name, len(unparsed), len(calls))
		}
	}
	st := tracedStep{name: name, res: res, ops: fsOps(calls)}
	seen := map[string]bool{}
	for _, op := range st.ops {
		if op.euid == 0 && op.kind != "unlink" && op.kind != "rmdir" && !seen[op.name] {
			seen[op.name] = true
			st.written = append(st.written, op.name)
		}
	}
	sort.Strings(st.written)
	return st
}

// The tracer itself, on this machine: relative names resolved against the
// working directory a process changed to, a link's target seen through the
// open, and a child that dropped to another uid told apart from root.
func TestTheTracerSeesWhatRootWrites(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "trace")
	script := `set -e
cd "$1"
mkdir sub
cd sub
echo x >file
mv file moved
ln -s ../target link
echo y >link
chmod 600 moved
rm moved
(cd .. && : >parentfile)
setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c ': >/tmp/` + "e2e-nobody-$$" + `; rm -f /tmp/e2e-nobody-$$'
`
	argv := tracedCommand(out, "sh", "-c", script, "sh", dir)
	if b, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	calls, unparsed := parseTrace(string(b))
	if len(unparsed) > 0 {
		t.Errorf("lines not understood: %q", unparsed)
	}
	got := map[string]string{}
	for _, op := range fsOps(calls) {
		if strings.HasPrefix(op.name, dir) || strings.HasPrefix(op.name, "/tmp/e2e-nobody-") {
			key := op.kind + " " + strings.Replace(op.name, dir, "D", 1)
			if strings.HasPrefix(op.name, "/tmp/e2e-nobody-") {
				key = op.kind + " /tmp/e2e-nobody"
			}
			got[key] = fmt.Sprintf("euid=%d opened=%s", op.euid, strings.Replace(op.opened, dir, "D", 1))
		}
	}
	for k, want := range map[string]string{
		"mkdir D/sub":                "euid=0 opened=",
		"open-write D/sub/file":      "euid=0 opened=D/sub/file",
		"rename-from D/sub/file":     "euid=0 opened=",
		"rename-to D/sub/moved":      "euid=0 opened=",
		"symlink D/sub/link":         "euid=0 opened=",
		"open-write D/sub/link":      "euid=0 opened=D/target",
		"chmod D/sub/moved":          "euid=0 opened=",
		"unlink D/sub/moved":         "euid=0 opened=",
		"open-write D/parentfile":    "euid=0 opened=D/parentfile",
		"open-write /tmp/e2e-nobody": fmt.Sprintf("euid=%d opened=", nobodyUID(t)),
	} {
		if g, ok := got[k]; !ok || !strings.HasPrefix(g, want) {
			t.Errorf("%s: got %q, want %q", k, g, want)
		}
	}
	if t.Failed() {
		t.Logf("all: %v", got)
	}
}

func nobodyUID(t *testing.T) int {
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(u.Uid)
	return n
}

// The rules, case by case: the account's directory and everything below it,
// unlinking, names root made itself in a shared sticky directory, and a
// name that led the kernel into the account's directory.
func TestTheJudgeFlagsRootsWritesWhereTheAccountCanWrite(t *testing.T) {
	const acct = "openwatch"
	j := &trustJudge{resolve: func(d string) string { return d }, account: acct, created: map[string]bool{},
		writable: map[string]accountDir{
			"/var/lib/openwatch": {mode: 0o750, owner: acct},
			"/tmp":               {mode: 0o777 | fs.ModeSticky, owner: "root"},
		}}
	for _, c := range []struct {
		op   fsOp
		want bool // a violation
	}{
		{fsOp{kind: "open-write", name: "/var/lib/openwatch/upgrade.state.new"}, true},
		{fsOp{kind: "rename-to", name: "/var/lib/openwatch/upgrade.state"}, true},
		{fsOp{kind: "chown", name: "/var/lib/openwatch/sub/file"}, true},
		{fsOp{kind: "open-write", name: "/var/lib/openwatch/x", euid: 999}, false},
		{fsOp{kind: "chown", name: "/var/lib/openwatch"}, false},
		{fsOp{kind: "unlink", name: "/var/lib/openwatch/upgrade.state"}, false},
		{fsOp{kind: "unlink", name: "/var/lib/openwatch/sub/x"}, true},
		{fsOp{kind: "rename-to", name: "/var/lib/openwatch-upgrade/upgrade.state"}, false},
		{fsOp{kind: "open-write", name: "/tmp/tmp.abc", exclusive: true}, false},
		{fsOp{kind: "chmod", name: "/tmp/tmp.abc"}, false},
		{fsOp{kind: "open-write", name: "/tmp/planted"}, true},
		{fsOp{kind: "mkdir", name: "/tmp/tmp.dir", exclusive: true}, false},
		{fsOp{kind: "open-write", name: "/tmp/tmp.dir/file"}, false},
		{fsOp{kind: "open-write", name: "/run/innocent", opened: "/var/lib/openwatch/x"}, true},
		{fsOp{kind: "open-write", name: "?7/relative"}, true},
	} {
		if got := j.violation(c.op); (got != "") != c.want {
			t.Errorf("%s %s (euid %d): violation %q, want one: %v", c.op.kind, c.op.name, c.op.euid, got, c.want)
		}
	}
}
