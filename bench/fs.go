package main

// The file-system rows (issue 17): PostgreSQL 18 from the cached Debian root
// (scripts/pg-roots.sh), its data directory on a loop-mounted file system
// made here (XFS with reflink=1, ext4), fsync on; A, B-file and B-clone
// on the same server next to each other, and a plain cp of the database's
// files (the physical floor of a copy). The whole run happens inside the
// root (chroot in a private mount namespace, as scripts/pg-matrix.sh), so
// pg_dump, psql and the server are all 18's.
//
//	make bench BENCH_ARGS='-fs xfs-reflink:1GB,4GB -fs-reps 3,2 -fs ext4:1GB'

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/pgtest"
)

const inRootVar = "OPENWATCH_BENCH_IN_ROOT"

type fsRun struct {
	FS    string    `json:"fs"`    // xfs-reflink, ext4
	Mkfs  string    `json:"mkfs"`  // the command that made it
	Sizes []dataset `json:"sizes"` // as in results
	// Samples: A, B-file, B-clone and cp (Downtime: the cp's time).
	Samples []sample `json:"samples"`
	PG      string   `json:"pg"`
	PGSet   string   `json:"pg_settings"`
	DataFS  string   `json:"data_fs"`
}

type fsResults struct {
	Args     string    `json:"args"`
	Reps     []int     `json:"reps"`
	Machine  machine   `json:"machine"`
	Runs     []fsRun   `json:"runs"`
	Seconds  float64   `json:"seconds"`
	Finished time.Time `json:"finished"`
}

type fsSpec struct {
	name  string
	mkfs  []string
	sizes []int64
	args  []string
}

func parseFS(specs []string) ([]fsSpec, error) {
	var out []fsSpec
	for _, s := range specs {
		name, sizes, _ := strings.Cut(s, ":")
		f := fsSpec{name: name}
		switch name {
		case "xfs-reflink":
			f.mkfs = []string{"mkfs.xfs", "-q", "-m", "reflink=1"}
		case "ext4":
			f.mkfs = []string{"mkfs.ext4", "-q", "-F"}
		default:
			return nil, fmt.Errorf("-fs %q: want xfs-reflink or ext4, with :SIZE[,SIZE] (e.g. xfs-reflink:1GB,4GB)", s)
		}
		if sizes == "" {
			sizes = "1GB"
		}
		for _, z := range strings.Split(sizes, ",") {
			n, err := parseSize(z)
			if err != nil {
				return nil, err
			}
			f.sizes = append(f.sizes, n)
		}
		out = append(out, f)
	}
	return out, nil
}

// runInRoot re-runs this benchmark inside PostgreSQL 18's cached root, with
// the checkout (read-write: the results are written there), the Go
// toolchain and caches bind-mounted at their own paths, and /tmp a fresh
// directory on this machine's disk (not a tmpfs: the dumps go there).
func runInRoot(args []string) error {
	root, err := pgtest.CachedRoot(18)
	if err != nil {
		return err
	}
	src, err := repoRoot()
	if err != nil {
		return err
	}
	goenv := func(k string) string {
		out, _ := exec.Command("go", "env", k).Output()
		return strings.TrimSpace(string(out))
	}
	tmp, err := os.MkdirTemp("/var/tmp", "owbench-fs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o1777)
	script := `set -eu
r=$1 src=$2 goroot=$3 gocache=$4 gomodcache=$5 tmp=$6
shift 6
# The root a mount point of its own: the helper's unshare --propagation
# private needs / to be one.
mount --bind "$r" "$r"
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount --bind "$tmp" "$r/tmp"
for d in "$src" "$goroot" "$gocache" "$gomodcache"; do
	mkdir -p "$r$d"
	mount --bind "$d" "$r$d"
done
mount -o remount,bind,ro "$r$goroot"
mount -o remount,bind,ro "$r$gomodcache"
exec chroot "$r" env -i PATH="$goroot/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root TMPDIR=/tmp LANG=C.UTF-8 \
	GOCACHE="$gocache" GOMODCACHE="$gomodcache" GOFLAGS=-mod=readonly GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0 \
	` + inRootVar + `=1 sh -c 'cd "$0" && exec go run ./bench "$@"' "$src" "$@"
`
	c := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh", root, src, goenv("GOROOT"), goenv("GOCACHE"), goenv("GOMODCACHE"), tmp}, args...)...)
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	logf("running inside %s (PostgreSQL 18), work files in %s", root, tmp)
	if err := c.Run(); err != nil {
		return fmt.Errorf("the file-system rows inside %s: %w", root, err)
	}
	return nil
}

// loopFS makes a file system on a loop device over a sparse file on this
// machine's disk and mounts it; done unmounts it and frees the device
// (mount -o loop sets autoclear, so the device also goes with the mount).
func loopFS(ctx context.Context, f fsSpec, bytes int64) (mnt string, done func(), err error) {
	dir, err := os.MkdirTemp("", "owbench-"+f.name+"-")
	if err != nil {
		return "", nil, err
	}
	os.Chmod(dir, 0o755)
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	done = func() {
		exec.Command("umount", mnt).Run()
		if out, _ := exec.Command("losetup", "-j", img, "-O", "NAME", "-n").Output(); len(out) > 0 {
			for _, d := range strings.Fields(string(out)) {
				exec.Command("losetup", "-d", d).Run()
			}
		}
		os.RemoveAll(dir)
	}
	run := func(name string, args ...string) error {
		if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := os.Mkdir(mnt, 0o755); err == nil {
		err = os.WriteFile(img, nil, 0o600)
	}
	if err == nil {
		err = os.Truncate(img, bytes)
	}
	if err == nil {
		err = run(f.mkfs[0], append(f.mkfs[1:], img)...)
	}
	if err == nil {
		err = run("mount", "-o", "loop", img, mnt)
	}
	if err == nil {
		err = os.Chmod(mnt, 0o755)
	}
	if err != nil {
		done()
		return "", nil, err
	}
	return mnt, done, nil
}

// runFS measures the file-system rows (inside the root).
func runFS(o options, specs []fsSpec, reps []int) error {
	started := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	res := &fsResults{Args: strings.Join(os.Args[1:], " "), Reps: reps, Machine: machineInfo()}
	peak := make(chan float64)
	go samplePeakLoad(ctx, peak)
	for _, f := range specs {
		largest := f.sizes[len(f.sizes)-1]
		// The database, a full copy (the clone's free-space check counts
		// one), 1 GiB it wants left, WAL, and room.
		mnt, done, err := loopFS(ctx, f, 2*largest+6*gb)
		if err != nil {
			return err
		}
		run, err := measureFS(ctx, o, f, mnt, reps)
		done()
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		res.Runs = append(res.Runs, run)
	}
	res.Machine.LoadAfter = loadavg()
	select {
	case res.Machine.LoadPeak = <-peak:
	case <-ctx.Done():
		return ctx.Err()
	}
	res.Seconds, res.Finished = time.Since(started).Seconds(), time.Now().UTC()
	js, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(o.fsRaw, append(js, '\n'), 0o644); err != nil {
		return err
	}
	logf("wrote %s", o.fsRaw)
	return nil
}

func measureFS(ctx context.Context, o options, f fsSpec, mnt string, reps []int) (fsRun, error) {
	run := fsRun{FS: f.name, Mkfs: strings.Join(f.mkfs, " ")}
	srv, err := pgtest.StartWith(pgtest.StartOptions{Dir: mnt, Fsync: true})
	if err != nil {
		return run, err
	}
	defer srv.Stop()
	o.size = f.sizes[len(f.sizes)-1]
	root, err := repoRoot()
	if err != nil {
		return run, err
	}
	e, err := newEnv(ctx, srv, root, o)
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(e.work)
	run.PG, run.PGSet = e.pgInfo(ctx)
	run.DataFS = e.dataFS(ctx)
	logf("%s: PostgreSQL %s: %s; data directory on %s", f.name, run.PG, run.PGSet, run.DataFS)
	if err := e.loader.loadHosts(ctx); err != nil {
		return run, err
	}
	for si, target := range f.sizes {
		t0 := time.Now()
		actual, err := e.loader.growTo(ctx, target, logf)
		if err != nil {
			return run, err
		}
		ds := e.describe(ctx, actual)
		ds.LoadSeconds = time.Since(t0).Seconds()
		run.Sizes = append(run.Sizes, ds)
		logf("%s: database %s, loaded in %.0fs", f.name, human(actual), ds.LoadSeconds)
		n := reps[min(si, len(reps)-1)]
		variants := []variant{{"A", ""}, {"B-file", e.defLevel}, {"B-clone", e.defLevel}, {"cp", ""}}
		for rep := 0; rep < n; rep++ {
			for k := range variants {
				v := variants[(k+rep)%len(variants)]
				if err := e.toPending(ctx); err != nil {
					return run, err
				}
				var s sample
				if v.approach == "cp" {
					s, err = e.cpFloor(ctx)
				} else {
					s, err = e.measure(ctx, v, false, false)
				}
				if err != nil {
					return run, fmt.Errorf("%s at %s: %w", v.approach, human(actual), err)
				}
				s.Size, s.Rep = si, rep
				run.Samples = append(run.Samples, s)
				logf("  %s %s %-7s rep %d: downtime %.3fs, clone %.3fs %s", f.name, human(actual), v.approach, rep+1, s.Downtime, s.CloneSeconds, s.CloneCost)
			}
		}
	}
	return run, nil
}

// cpFloor copies the database's directory (base/<oid>) to a sibling on the
// same file system with cp --reflink=never, then syncfs: the physical
// floor of a copy of the same files (a clone also fsyncs what it wrote).
func (e *env) cpFloor(ctx context.Context) (sample, error) {
	s := sample{Approach: "cp"}
	var oid uint32
	conn, err := pgx.Connect(ctx, e.srv.SuperURL("postgres"))
	if err != nil {
		return s, err
	}
	err = conn.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = $1", dbName).Scan(&oid)
	conn.Close(ctx)
	if err != nil {
		return s, err
	}
	data := filepath.Join(e.srv.SocketDir, "data")
	src, dst := filepath.Join(data, "base", fmt.Sprint(oid)), filepath.Join(e.srv.SocketDir, "cp-floor")
	os.RemoveAll(dst)
	defer os.RemoveAll(dst)
	c := exec.CommandContext(ctx, "sh", "-c", `cp -r --reflink=never "$1" "$2" && sync -f "$2"`, "sh", src, dst)
	d, _, err := e.timed(ctx, c)
	s.Downtime, s.Wall, s.Copied = d, d, dirSize(dst)
	return s, err
}

// fsAgg: the median, min and max downtime, the median clone time, and
// what the clone cost (the first sample's words), for one row.
func (r fsRun) agg(approach string, size int) (n int, down, lo, hi, clone float64, cost string) {
	var d, c []float64
	for _, s := range r.Samples {
		if s.Approach != approach || s.Size != size {
			continue
		}
		d = append(d, s.Downtime)
		if s.CloneSeconds > 0 {
			c = append(c, s.CloneSeconds)
		}
		if cost == "" {
			cost = s.CloneCost
		}
	}
	if len(d) == 0 {
		return 0, math.NaN(), math.NaN(), math.NaN(), math.NaN(), ""
	}
	sort.Float64s(d)
	return len(d), median(d), d[0], d[len(d)-1], median(c), cost
}

// fsSection adds the -fs rows, read from their saved file, to the report.
func fsSection(p func(string, ...any), file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var r fsResults
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	m := r.Machine
	p("\n## PostgreSQL 18 on loop-mounted XFS (reflink) and ext4 (`-fs`, issue 17)\n\n")
	p("Generated by `make bench BENCH_ARGS=\"%s\"` on %s, in %.0f min; samples in `%s`. The benchmark runs inside PostgreSQL 18's cached Debian root (`scripts/pg-roots.sh`; chroot in a private mount namespace, the checkout and Go toolchain bind-mounted), so the server, `pg_dump`, `pg_restore` and `psql` are all 18's. Each file system is made on a loop device over a sparse file on this machine's disk (kernel %s), mounted, and holds the data directory of its own durable server (fsync and full_page_writes on); the work directory (restore point files, A's plain dump) is on the machine's disk, as in the rows above. On each server A, B-file and B-clone run next to each other, interleaved with the order rotated each repetition, as above; **cp** is `cp -r --reflink=never` of the database's directory (`base/<oid>`) to a sibling directory on the same file system, then `sync -f`: the physical floor of copying the same files. B-clone's clone time is the binary's `taken in`, and what it cost is the binary's own report (FIEMAP of the clone's files: shared blocks or a copy). Repetitions per size: %v.\n\n",
		r.Args, r.Finished.Format("2006-01-02 15:04 UTC"), r.Seconds/60, file, m.Kernel, r.Reps)
	p("**The numbers are noisy**: other engineers ran tests on this %d-core machine during the run (1-minute load %s before, %s after, highest sampled %.2f), and the larger size ran with few repetitions; read the min–max ranges, and treat a target met or missed by a small margin as unsettled.\n\n", m.Cores, m.LoadBefore, m.LoadAfter, m.LoadPeak)
	p("| file system | database | approach | downtime (median, min–max) | × A | clone's own time | what the clone cost (the binary's words) | runs |\n|---|---|---|---|---|---|---|---|\n")
	for _, run := range r.Runs {
		for i, d := range run.Sizes {
			_, a, _, _, _, _ := run.agg("A", i)
			for _, ap := range []string{"A", "B-file", "B-clone", "cp"} {
				n, down, lo, hi, cl, cost := run.agg(ap, i)
				if n == 0 {
					continue
				}
				xa, c := "", "–"
				if ap != "A" {
					xa = ratio(down, a)
				}
				if ap == "B-clone" {
					c = secs(cl)
				}
				if cost == "" {
					cost = "–"
				}
				name := map[string]string{"A": "A plain pg_dump", "B-file": "B-file (default compression)", "B-clone": "B-clone (`RESTORE_POINT=auto`)", "cp": "cp of the database's files (not an upgrade: its time)"}[ap]
				p("| %s | %s | %s | %s (%s–%s) | %s | %s | %s | %d |\n", run.FS, d.Label, name, secs(down), secs(lo), secs(hi), xa, c, cost, n)
			}
		}
	}
	p("\nServers: ")
	for k, run := range r.Runs {
		if k > 0 {
			p("; ")
		}
		p("%s: `%s`, PostgreSQL %s (%s), data directory on %s", run.FS, run.Mkfs, run.PG, run.PGSet, run.DataFS)
	}
	p(".\n\n### Targets (PostgreSQL 18)\n\n| target | measured | |\n|---|---|---|\n")
	find := func(fs string) (fsRun, bool) {
		for _, run := range r.Runs {
			if run.FS == fs {
				return run, true
			}
		}
		return fsRun{}, false
	}
	// The sizes nearest 1 GB and 4 GB.
	at := func(run fsRun, want int64) int {
		best := -1
		for i, d := range run.Sizes {
			if best < 0 || math.Abs(float64(d.Bytes-want)) < math.Abs(float64(run.Sizes[best].Bytes-want)) {
				best = i
			}
		}
		return best
	}
	if run, ok := find("xfs-reflink"); ok {
		i := at(run, gb)
		_, a, _, _, _, _ := run.agg("A", i)
		_, c, _, _, _, _ := run.agg("B-clone", i)
		p("| XFS reflink, %s: B-clone downtime ≤ 0.05 × A | %s / %s = %s | %s |\n", run.Sizes[i].Label, secs(c), secs(a), ratio(c, a), verdict(c <= 0.05*a, c, a))
		if j := at(run, 4*gb); j != i {
			_, c4, _, _, _, _ := run.agg("B-clone", j)
			p("| XFS reflink, %s: B-clone downtime ≤ 1.5 × its %s figure | %s / %s = %s | %s |\n", run.Sizes[j].Label, run.Sizes[i].Label, secs(c4), secs(c), ratio(c4, c), verdict(c4 <= 1.5*c, c4, c))
		} else {
			p("| XFS reflink, 4 GB: B-clone downtime ≤ 1.5 × its 1 GB figure | no 4 GB size in this run | not measured |\n")
		}
	}
	if run, ok := find("ext4"); ok {
		i := at(run, gb)
		_, a, _, _, _, _ := run.agg("A", i)
		_, c, _, _, cl, _ := run.agg("B-clone", i)
		_, cp, _, _, _, _ := run.agg("cp", i)
		p("| ext4, %s: the clone's own time ≤ 1.2 × a cp of the same files | %s / %s = %s | %s |\n", run.Sizes[i].Label, secs(cl), secs(cp), ratio(cl, cp), verdict(cl <= 1.2*cp, cl, cp))
		p("| ext4, %s: B-clone downtime ≤ 0.5 × A | %s / %s = %s | %s |\n", run.Sizes[i].Label, secs(c), secs(a), ratio(c, a), verdict(c <= 0.5*a, c, a))
	}
	return nil
}
