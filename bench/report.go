package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/migrate/rehearse"
)

type machine struct {
	CPU, Kernel, PG, Go string
	// PGSettings are the server's durability and memory settings as it
	// reports them; DataFS the file system of its data directory.
	PGSettings            string `json:",omitempty"`
	DataFS                string `json:",omitempty"`
	Cores                 int
	MemGB                 float64
	LoadBefore, LoadAfter string
	// LoadPeak is the highest 1-minute load average sampled (every 30 s)
	// during the run.
	LoadPeak float64 `json:",omitempty"`
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func load1() float64 {
	var l float64
	fmt.Sscanf(loadavg(), "%f", &l)
	return l
}

func machineInfo() machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadavg(), CPU: "?"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPU = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.Split(string(b), "\n")[0], "MemTotal:"), "%f", &kb)
		m.MemGB = kb / (1 << 20)
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	return m
}

type results struct {
	Options      string          `json:"size_arg"`
	Reps         int             `json:"reps"`
	RestoreReps  int             `json:"restore_reps"`
	DefaultLevel string          `json:"default_compression"`
	DefaultJobs  int             `json:"default_restore_jobs"`
	Levels       []string        `json:"levels"`
	Jobs         []int           `json:"jobs"`
	Newest       migration       `json:"-"`
	NewestFile   string          `json:"pending_migration"`
	Machine      machine         `json:"machine"`
	Sizes        []dataset       `json:"sizes"`
	Samples      []sample        `json:"samples"`
	Check        checkStats      `json:"check"`
	Restores     []restoreSample `json:"restores"`
	Seconds      float64         `json:"seconds"`
	Finished     time.Time       `json:"finished"`
}

func median(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type agg struct {
	n                  int
	down, wall, lo, hi float64
	dump               int64
	rss                int64
	copied             int64
	// B-clone: the clone as the binary timed it; the export (systemctl
	// start → helper exit, min–max) and when its first line came after
	// systemctl start; exported: samples whose export was checked.
	clone                      float64
	export, exportLo, exportHi float64
	exportStart                float64
	exported                   int
}

func (r *results) agg(approach, level string, noop bool, size int) agg {
	var d, w, dumps, clones, exports, starts []float64
	var a agg
	for _, s := range r.Samples {
		if s.Approach != approach || s.Noop != noop || s.Size != size || (strings.HasPrefix(approach, "B") && s.Level != level) {
			continue
		}
		d, w = append(d, s.Downtime), append(w, s.Wall)
		dumps = append(dumps, float64(s.DumpBytes))
		a.rss = max(a.rss, s.MaxRSSKB)
		a.copied = s.Copied
		if s.CloneSeconds > 0 {
			clones = append(clones, s.CloneSeconds)
		}
		if s.ExportSeconds > 0 {
			exports = append(exports, s.ExportSeconds)
		}
		if s.ExportStart > 0 {
			starts = append(starts, s.ExportStart)
			a.exported++
		}
	}
	if len(d) == 0 {
		return agg{down: math.NaN(), wall: math.NaN(), clone: math.NaN(), export: math.NaN(), exportStart: math.NaN()}
	}
	sort.Float64s(d)
	a.n, a.down, a.wall, a.lo, a.hi, a.dump = len(d), median(d), median(w), d[0], d[len(d)-1], int64(median(dumps))
	a.clone, a.export, a.exportStart = median(clones), median(exports), median(starts)
	if len(exports) > 0 {
		sort.Float64s(exports)
		a.exportLo, a.exportHi = exports[0], exports[len(exports)-1]
	}
	return a
}

func (r *results) restoreMedian(kind, level string, jobs int) (float64, int64) {
	var x []float64
	var rss int64
	for _, s := range r.Restores {
		if s.Kind == kind && (kind == "plain" || s.Level == level) && s.Jobs == jobs {
			x = append(x, s.Seconds)
			rss = max(rss, s.MaxRSSKB)
		}
	}
	return median(x), rss
}

func secs(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	if x < 1 {
		return fmt.Sprintf("%.0f ms", x*1000)
	}
	return fmt.Sprintf("%.2f s", x)
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	if a/b < 0.1 {
		return fmt.Sprintf("%.4f", a/b)
	}
	return fmt.Sprintf("%.2f", a/b)
}

func yes(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// verdict is yes(ok), or "not measured" when a number it needs is missing.
func verdict(ok bool, needs ...float64) string {
	for _, x := range needs {
		if math.IsNaN(x) {
			return "not measured"
		}
	}
	return yes(ok)
}

func rssMB(kb int64) string {
	if kb <= 0 {
		return "–"
	}
	return fmt.Sprintf("%d MB", kb/1024)
}

func (r *results) write(o options) error {
	main := len(r.Sizes) - 1
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	p("# Upgrade downtime benchmark\n\n")
	args := "-size " + r.Options
	if strings.Contains(r.Options, ",") {
		args = "-sizes " + r.Options
	}
	p("Generated by `make bench BENCH_ARGS='%s'` (bench/, issues 5, 9 and 23) on %s, in %.0f min. Every number below comes from that run; raw samples are in `%s`. Do not edit by hand: rerun the benchmark.\n\n",
		args, r.Finished.Format("2006-01-02 15:04 UTC"), r.Seconds/60, o.raw)
	p("## How to run\n\n    make bench                            # 1 GB, as root (starts its own PostgreSQL as the postgres user)\n    make bench BENCH_ARGS='-size quick'   # 96 MB, a few minutes\n    go run ./bench -h                     # sizes, repetitions, compression levels, pg_restore -j values\n    go run ./bench -render %s  # rewrite this report and the plot from saved samples\n    make bench BENCH_ARGS=\"-fs 'xfs-reflink:1GB,4GB ext4:1GB' -fs-reps 2,1\"  # PostgreSQL 18 on loop-mounted XFS/ext4 (needs the cached root: sh scripts/pg-roots.sh 18)\n    go run ./bench -sizes 512MB,1GB -only A,B-file,D  # issue 23: B-file against A in parts, without the clone, no-op, --check and restore measurements\n\n", o.raw)
	p("## What is measured\n\n")
	p("- **A**, the usual approach: `systemctl stop`, `pg_dump --no-owner --no-privileges` (plain SQL) to a file, the migration (`openwatch migrate --no-backup`, which is dbmate's library with no extras; the dbmate CLI is not installed here), `systemctl start`.\n")
	p("- **B**, ours: the generated helper `%s` run end to end with the binary built at version %s, in a private mount namespace where the build is bind-mounted over `%s` and temporary directories over `%s`, `%s` and `/run/systemd` (`upgrade.conf` as shipped in `%s`, with `BACKUP_DIR` pointed at a temporary directory, and `BACKUP_COMPRESSION` and `RESTORE_POINT` as below). The database role has `CREATEDB` and owns the database, as a clone needs.\n",
		helperPath, pkgVersion, defaults.Binary, etcDir, varlibDir, shippedConf)
	p("  - **B-file**: `RESTORE_POINT=file`, the restore point a verified `pg_dump -Fc` file written while the service is stopped: uncompressed, and compressed after the start (issue 23, part by part below; in runs before it, compressed while it was written). B-file-Z*n* is B-file with `BACKUP_COMPRESSION=n`; the shipped default is **%s**.\n", r.DefaultLevel)
	p("  - **B-clone**: `RESTORE_POINT=auto`, the shipped default, which takes a clone (`CREATE DATABASE %s… TEMPLATE %s STRATEGY FILE_COPY`) where `clone.Eligible` finds it safe: here root, the server on this machine (over 127.0.0.1), the role with `CREATEDB` owning the database, no other session, and the free space established through the server's data directory. The run fails unless the binary reports `restore point: %s…, a clone of the database taken in …`, and B-file fails if it reports a clone or leaves a clone behind, so neither row can measure the other path. The clone's own time is the binary's `taken in`.\n", clone.Prefix, dbName, clone.Prefix)
	p("  - **Export** (B-clone): after `systemctl start` the helper runs `openwatch backup --export`; without systemd as PID 1, as on this machine (`systemd-run` fails), in the foreground, so the helper's exit marks its end. Its time is the recorded `systemctl start` → the helper's exit, and runs while the service is up. Checked in every repetition: the export's first line (`exporting the clone restore point …`, timestamped as it arrived) came after the recorded `systemctl start`; `BACKUP_DIR` holds exactly one file matching `%s`, named for the clone, which `pg_restore --list` reads as a dump of the clone's database (it is verified the same way by the binary); no database named `%s*` is left. B-file's helper runs the same step, which finds no clone.\n", dump.FileGlob, clone.Prefix)
	p("- **D**, B's `pg_dump -Fc` alone (no service, no migration); **P**, a parallel `pg_dump -Fd -j` (not what the binary runs); **F**, the floor: one connection, `COPY … TO STDOUT` of every table into a discarding writer, then the migration's SQL and its `schema_migrations` row in one transaction.\n")
	p("- Downtime is `systemctl stop` → `systemctl start` as timestamped by a recording `systemctl` on `PATH` (it reports the unit active and does nothing else). A no-op upgrade of B calls `systemctl try-restart` and never stops the service for longer than the restart itself, which every approach pays and the recorder does not model: its downtime is 0 and its wall time (the `migrate --check` the helper runs while the service is still up) is shown next to it. For D, P and F, downtime is the whole run.\n")
	p("- The pending migration is the newest file in `migrations/` (`%s`): the schema is applied by the binary, that migration rolled back with its own `migrate:down`, and the data loaded at the previous head. It is rolled back again, and a `CHECKPOINT` run, before every repetition. So the checkpoint that `CREATE DATABASE … STRATEGY FILE_COPY` forces starts with few dirty buffers, as after the helper's preflight `CHECKPOINT` (which the binary runs only for a superuser or a member of `pg_checkpoint`; the benchmark's role is neither); behind a busy service without it, a clone would also pay for writing the dirty buffers out.\n", r.NewestFile)
	p("- **Swap restore**: `openwatch migrate` with `RESTORE_POINT=clone` takes a fresh clone at the previous head and applies the migration; then `openwatch restore --yes <clone>` is timed (process start included), the database checked to be the clone again (the migration not applied, no clone left), and the database the swap kept aside dropped with the `DROP DATABASE` the output gives. It is compared with `psql -f` of A's plain dump into an empty database.\n")
	p("- Peak RSS: `ru_maxrss` from `wait4` of the process run — for A and B the largest process in its tree (B: the helper, `openwatch`, and the `pg_dump` it runs; A: `pg_dump`, `openwatch`).\n")
	p("- Each measurement is repeated %d times (the plain restore, the swap and the default restore %d times, alternative restores once), interleaved with the order rotated each repetition; tables show medians (min–max for downtime).\n\n", r.Reps, r.RestoreReps)

	pg := m.PG
	if m.PGSettings != "" {
		pg += " (" + m.PGSettings + ", as the server reports them)"
	} else {
		pg += " (settings not recorded: pgtest then ran fsync=off, full_page_writes=off)"
	}
	fs := m.DataFS
	if fs == "" {
		fs = "not recorded"
	}
	peak := ""
	if m.LoadPeak > 0 {
		peak = fmt.Sprintf("; highest 1-minute load sampled during the run: %.2f", m.LoadPeak)
	}
	p("## Machine\n\n| | |\n|---|---|\n| CPU | %s, %d cores |\n| memory | %.1f GB |\n| kernel | %s |\n| PostgreSQL | %s |\n| data directory | %s |\n| Go | %s |\n| load average before / after | %s / %s%s (the machine is shared) |\n\n",
		m.CPU, m.Cores, m.MemGB, m.Kernel, pg, fs, m.Go, m.LoadBefore, m.LoadAfter, peak)

	var l1 float64
	fmt.Sscanf(m.LoadBefore, "%f", &l1)
	if l1 > float64(m.Cores) || m.LoadPeak > float64(m.Cores) {
		p("The machine was busy during this run (1-minute load %.1f at the start", l1)
		if m.LoadPeak > 0 {
			p(", up to %.1f during it", m.LoadPeak)
		}
		p(", on %d cores; the benchmark's own processes count towards it: a server backend with pg_dump, psql or the binary, four processes for P): downtimes spread between repetitions; read the min–max ranges.\n\n", m.Cores)
	}
	p("## Dataset\n\n| database | hosts | scan results | scan_results heap+TOAST | its indexes | plain dump (A) | load time |\n|---|---|---|---|---|---|---|\n")
	for i, d := range r.Sizes {
		a := r.agg("A", "", false, i)
		p("| %s | %d | %d | %s | %s | %s | %.0f s |\n", d.Label, d.Hosts, d.Scans, human(d.ScanTableBytes), human(d.ScanIndexBytes), human(a.dump), d.LoadSeconds)
	}
	p("\nScan results carry JSONB documents like a vulnerability scanner's output (CVE ids, package names and versions, sentences drawn from a 300-word vocabulary, random SHA-256 evidence and run ids), indexed by a btree and a `jsonb_path_ops` GIN index from the real migrations.\n\n")

	p("## Upgrade with a pending migration\n\n| database | approach | downtime (median, min–max) | × A | × F | restore point | peak RSS |\n|---|---|---|---|---|---|---|\n")
	for i, d := range r.Sizes {
		a, f := r.agg("A", "", false, i), r.agg("F", "", false, i)
		type row struct {
			name, kind string // kind: A, B, C (B-clone), other
			g          agg
		}
		rows := []row{{"A plain pg_dump", "A", a}}
		levels := []string{r.DefaultLevel}
		if i == main {
			for _, l := range r.Levels {
				if !contains(levels, l) {
					levels = append(levels, l)
				}
			}
		}
		for k, l := range levels {
			name := "B-file-Z" + l
			if l == r.DefaultLevel {
				name += " (default)"
			}
			rows = append(rows, row{name, "B", r.agg("B-file", l, false, i)})
			if k == 0 {
				rows = append(rows, row{"B-clone (`RESTORE_POINT=auto`, a clone taken; export at Z" + r.DefaultLevel + ")", "C", r.agg("B-clone", r.DefaultLevel, false, i)})
			}
		}
		rows = append(rows, row{"D: B-file's pg_dump alone (-Fc -Z" + r.DefaultLevel + ", no service, no migration)", "", r.agg("D", r.DefaultLevel, false, i)})
		if i == main {
			rows = append(rows, row{fmt.Sprintf("P: pg_dump -Fd -j %d -Z%s alone (what a parallel dump would cost)", r.Machine.Cores, r.DefaultLevel), "", r.agg("P", r.DefaultLevel, false, i)})
		}
		rows = append(rows, row{"F floor", "", f})
		for _, row := range rows {
			if row.g.n == 0 {
				continue
			}
			ba, bf, size := "", "", "–"
			if row.kind == "B" || row.kind == "C" {
				ba, bf = ratio(row.g.down, a.down), ratio(row.g.down, f.down)
			}
			switch {
			case row.kind == "C":
				size = fmt.Sprintf("a clone (%s on the server), exported after the start to %s (%s × plain)", d.Label, human(row.g.dump), ratio(float64(row.g.dump), float64(a.dump)))
			case row.g.dump > 0 && row.kind == "B":
				size = fmt.Sprintf("%s (%s × plain)", human(row.g.dump), ratio(float64(row.g.dump), float64(a.dump)))
			case row.g.dump > 0:
				size = human(row.g.dump)
			case row.g.copied > 0:
				size = "(" + human(row.g.copied) + " copied)"
			}
			p("| %s | %s | %s (%s–%s) | %s | %s | %s | %s |\n", d.Label, row.name, secs(row.g.down), secs(row.g.lo), secs(row.g.hi), ba, bf, size, rssMB(row.g.rss))
		}
	}

	restricted := strings.Contains(r.Options, "-only ")
	if restricted {
		p("\nThis run measured only the approaches `-only` names (for issue 23: A, B-file and D, with `REHEARSE=no`, since the preflight's rehearsal runs before the stop): the clone, the floor, the no-op upgrade, `migrate --check` and the restores were not measured; see the cross-checked run below and the earlier reports in git history for them.\n")
	} else {
		r.rehearsalTable(p)
		if r.agg("B-clone", r.DefaultLevel, false, main).n > 0 {
			r.exportTable(p)
		}

		p("\n## No-op upgrade (nothing pending)\n\n| database | A downtime | B downtime | B helper wall time (service up) |\n|---|---|---|---|\n")
		for i, d := range r.Sizes {
			a, bb := r.agg("A", "", true, i), r.agg("B", r.DefaultLevel, true, i)
			p("| %s | %s (%s–%s) | %s | %s |\n", d.Label, secs(a.down), secs(a.lo), secs(a.hi), secs(bb.down), secs(bb.wall))
		}

		p("\n## Restoring a restore point (%s)\n\n| restore | time (median) | × plain | peak RSS |\n|---|---|---|---|\n", r.Sizes[main].Label)
		plain, plainRSS := r.restoreMedian("plain", "", 0)
		swap, swapRSS := r.restoreMedian("swap", "", 0)
		p("| `psql -f` of A's plain dump, into an empty database | %s | 1.00 | %s |\n", secs(plain), rssMB(plainRSS))
		if !math.IsNaN(swap) {
			p("| `openwatch restore --yes <clone>`: the swap by renaming | %s | %s | %s |\n", secs(swap), ratio(swap, plain), rssMB(swapRSS))
		}
		seen := map[string]bool{}
		for _, l := range append([]string{r.DefaultLevel}, r.Levels...) {
			t, rss := r.restoreMedian("openwatch", l, 0)
			if math.IsNaN(t) || seen[l] {
				continue
			}
			seen[l] = true
			name := "`openwatch restore --yes FILE`, the B-file-Z" + l + " file"
			if l == r.DefaultLevel {
				name += " (default)"
			}
			name += ", into an empty database"
			p("| %s | %s | %s | %s |\n", name, secs(t), ratio(t, plain), rssMB(rss))
		}
		for _, j := range r.Jobs {
			t, rss := r.restoreMedian("pg_restore", r.DefaultLevel, j)
			if math.IsNaN(t) {
				continue
			}
			p("| `pg_restore -j %d -d` (Z%s archive; not what the binary runs) | %s | %s | %s |\n", j, r.DefaultLevel, secs(t), ratio(t, plain), rssMB(rss))
		}
		p("\n`openwatch restore FILE` pipes `pg_restore -f -` into one `psql` transaction (all or nothing), so it cannot use `pg_restore -j` (and the shipped `upgrade.conf` has no `RESTORE_JOBS`); the `pg_restore -j` rows show what parallelism would buy if the restore gave up the single transaction. `openwatch restore <clone>` copies nothing: two `ALTER DATABASE … RENAME` and the recorded database properties in one transaction; the database it replaces is kept aside (the benchmark drops it afterwards).\n")

		p("\n## `openwatch migrate --check`\n\n%d runs against the local database at head, process start included: median **%s**, p90 %s, min %s, max %s.\n",
			r.Check.Runs, secs(r.Check.Median), secs(r.Check.P90), secs(r.Check.Min), secs(r.Check.Max))
		if r.Check.VersionMedian > 0 {
			p("`openwatch --version` (process start, no database) takes %s median in the same run, so the database part of `--check` is about %s.\n", secs(r.Check.VersionMedian), secs(r.Check.Median-r.Check.VersionMedian))
		}

		// Targets.
		a, bd, f := r.agg("A", "", false, main), r.agg("B-file", r.DefaultLevel, false, main), r.agg("F", "", false, main)
		bc := r.agg("B-clone", r.DefaultLevel, false, main)
		bnoMain, bnoSmall := r.agg("B", r.DefaultLevel, true, main), r.agg("B", r.DefaultLevel, true, 0)
		anoMain, anoSmall := r.agg("A", "", true, main), r.agg("A", "", true, 0)
		owR, _ := r.restoreMedian("openwatch", r.DefaultLevel, 0)
		p("\n## Targets (at %s, the largest size of this run)\n\n| target | measured | |\n|---|---|---|\n", r.Sizes[main].Label)
		p("| pending, with a clone: downtime ≤ 0.3 × A | B-clone/A = %s (B-clone %s, A %s) | %s |\n", ratio(bc.down, a.down), secs(bc.down), secs(a.down), verdict(bc.down <= 0.3*a.down, bc.down, a.down))
		p("| clone restore (the swap) ≤ 0.02 × plain restore | %s / %s = %s | %s |\n", secs(swap), secs(plain), ratio(swap, plain), verdict(swap <= 0.02*plain, swap, plain))
		exportUp := 0
		total := 0
		for i := range r.Sizes {
			g := r.agg("B-clone", r.DefaultLevel, false, i)
			exportUp, total = exportUp+g.exported, total+g.n
		}
		if total == 0 {
			p("| the export runs while the service is up | no B-clone run | not measured |\n")
		} else {
			p("| the export runs while the service is up | %s: the export's first line came after the recorded `systemctl start` in %d of %d B-clone runs, each leaving one verified file and no clone | %s |\n",
				map[bool]string{true: "yes", false: "no"}[exportUp == total], exportUp, total, yes(exportUp == total))
		}
		p("| no-op: our added downtime < 0.5 s, flat in size | B %s at %s, %s at %s (A: %s → %s) | %s |\n",
			secs(bnoSmall.down), r.Sizes[0].Label, secs(bnoMain.down), r.Sizes[main].Label, secs(anoSmall.down), secs(anoMain.down), verdict(bnoMain.down < 0.5 && bnoSmall.down < 0.5, bnoMain.down, bnoSmall.down))
		p("| pending, with a file: downtime ≤ 1.15 × F | B-file/F = %s (B-file %s, F %s) | %s |\n", ratio(bd.down, f.down), secs(bd.down), secs(f.down), verdict(bd.down <= 1.15*f.down, bd.down, f.down))
		p("| restore point file ≤ 0.35 × plain dump | %s / %s = %s | %s |\n", human(bd.dump), human(a.dump), ratio(float64(bd.dump), float64(a.dump)), yes(float64(bd.dump) <= 0.35*float64(a.dump)))
		p("| restoring the file ≤ 0.6 × plain restore | %s / %s = %s | %s |\n", secs(owR), secs(plain), ratio(owR, plain), verdict(owR <= 0.6*plain, owR, plain))
		p("| `migrate --check` median < 50 ms | %s | %s |\n", secs(r.Check.Median), yes(r.Check.Median < 0.05))
		p("| (size requested by the issue: 1 GB) | this run: %s | %s |\n", r.Sizes[main].Label, map[bool]string{true: "as asked", false: "smaller: the targets at 1 GB are not measured by this run"}[r.Sizes[main].Bytes >= 900*mb])

		// Compression choice.
		p("\n## Choosing BACKUP_COMPRESSION (B-file)\n\n| level | downtime | B-file/F | restore point × plain | restore × plain |\n|---|---|---|---|---|\n")
		best, bestDown := "", math.Inf(1)
		sizeBest, sizeBestDown := "", math.Inf(1)
		for _, l := range r.Levels {
			g := r.agg("B-file", l, false, main)
			t, _ := r.restoreMedian("openwatch", l, 0)
			sz := float64(g.dump) / float64(a.dump)
			p("| %s | %s | %s | %.2f | %s |\n", l, secs(g.down), ratio(g.down, f.down), sz, ratio(t, plain))
			if sz <= 0.35 && g.down < sizeBestDown {
				sizeBest, sizeBestDown = l, g.down
			}
			if sz <= 0.35 && !math.IsNaN(t) && t <= 0.6*plain && g.down < bestDown {
				best, bestDown = l, g.down
			}
		}
		if best != "" {
			p("\nThe fastest level that meets both size and restore targets in this run: **%s** (shipped default: %s).\n", best, r.DefaultLevel)
		} else {
			p("\nNo measured level meets both the size and the restore-time target in this run.")
			if sizeBest != "" {
				p(" The fastest level within the size target (≤ 0.35 × plain): **%s** (%s; shipped default: %s).", sizeBest, secs(sizeBestDown), r.DefaultLevel)
			}
			p("\n")
		}
		r.why(p, main)
	}
	r.fileTable(p)
	for _, file := range strings.Split(o.also, ",") {
		if file == "" {
			continue
		}
		if err := crossCheck(p, file); err != nil {
			return err
		}
	}
	if _, err := os.Stat(o.fsRaw); err == nil && o.fsRaw != "" {
		if err := fsSection(p, o.fsRaw); err != nil {
			return err
		}
	}
	p("\n## Plot\n\n![downtime against database size](%s)\n", filepath.Base(o.svg))

	if !o.rendering {
		if err := os.MkdirAll(filepath.Dir(o.raw), 0o755); err != nil {
			return err
		}
		js, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(o.raw, append(js, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(o.svg, []byte(r.svg()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	if o.rendering {
		logf("wrote %s, %s from %s", o.out, o.svg, o.raw)
	} else {
		logf("wrote %s, %s, %s", o.out, o.svg, o.raw)
	}
	return nil
}

// exportTable shows the clone and its export at each size.
// rehearsalTable shows what the preflight's rehearsal cost in B's pending
// runs, while the service was still up, next to the downtime that followed.
func (r *results) rehearsalTable(p func(string, ...any)) {
	type row struct {
		size         int
		name         string
		wall, lo, hi float64
		est, down    float64
		copy         int64
	}
	var rows []row
	for i := range r.Sizes {
		for _, v := range []struct{ approach, name string }{{"B-file", "B-file-Z" + r.DefaultLevel}, {"B-clone", "B-clone"}} {
			var w, est []float64
			var cp int64
			for _, s := range r.Samples {
				if s.Approach == v.approach && s.Level == r.DefaultLevel && !s.Noop && s.Size == i && s.RehearsalSeconds > 0 {
					w, est = append(w, s.RehearsalSeconds), append(est, s.RehearsalEstimate)
					cp = max(cp, s.RehearsalCopy)
				}
			}
			if len(w) == 0 {
				continue
			}
			sort.Float64s(w)
			rows = append(rows, row{i, v.name, median(w), w[0], w[len(w)-1], median(est), r.agg(v.approach, r.DefaultLevel, false, i).down, cp})
		}
	}
	if len(rows) == 0 {
		return
	}
	p("\n### The preflight's rehearsal (`REHEARSE=auto`), while the service is up\n\n")
	p("In each pending run of B at the default compression (the alternatives run with `REHEARSE=no`) the preflight rehearsed the migration on a scratch copy (`pg_dump | pg_restore` into `%s…`, dropped; the run fails if it did not, or left the database behind) before the helper stopped the service. Its time is its first output line to its result line, as they arrived; it is not downtime. The estimate is the migration's time on the copy, which the preflight prints as the downtime estimate for the migrations.\n\n", rehearse.Prefix)
	p("| database | approach | rehearsal (median, min–max), service up | its copy on the server | estimate: the migration on the copy | downtime that followed (median) |\n|---|---|---|---|---|---|\n")
	for _, x := range rows {
		p("| %s | %s | %s (%s–%s) | %s | %s | %s |\n", r.Sizes[x.size].Label, x.name, secs(x.wall), secs(x.lo), secs(x.hi), human(x.copy), secs(x.est), secs(x.down))
	}
}

func (r *results) exportTable(p func(string, ...any)) {
	p("\n## The clone and its export (B-clone)\n\n| database | clone (`taken in`) | B-clone downtime | export: `systemctl start` → helper exit (median, min–max) | export's first line after `systemctl start` | exported file | checked (after start, one verified file of the clone, clone dropped) | B-file: the same step, no clone |\n|---|---|---|---|---|---|---|---|\n")
	for i, d := range r.Sizes {
		c, bf := r.agg("B-clone", r.DefaultLevel, false, i), r.agg("B-file", r.DefaultLevel, false, i)
		if c.n == 0 {
			continue
		}
		p("| %s | %s | %s | %s (%s–%s) | %s | %s | %d of %d repetitions | %s |\n", d.Label, secs(c.clone), secs(c.down), secs(c.export), secs(c.exportLo), secs(c.exportHi),
			secs(c.exportStart), human(c.dump), c.exported, c.n, secs(bf.export))
	}
	p("\nThe export runs while the service is up: it is the same `pg_dump -Fc -Z%s` of the same data that B-file runs while the service is stopped, read from the clone instead of the live database, then `DROP DATABASE` of the clone.\n", r.DefaultLevel)
}

// svg plots downtime (s) against database size (MB).
func (r *results) svg() string {
	type series struct {
		name, color, dash string
		pts               [][2]float64
	}
	var ss []series
	add := func(name, color, dash, approach, level string, noop bool) {
		s := series{name: name, color: color, dash: dash}
		for i, d := range r.Sizes {
			g := r.agg(approach, level, noop, i)
			if !math.IsNaN(g.down) {
				s.pts = append(s.pts, [2]float64{float64(d.Bytes) / mb, g.down})
			}
		}
		if len(s.pts) > 0 {
			ss = append(ss, s)
		}
	}
	add("A pending (plain pg_dump)", "#d62728", "", "A", "", false)
	add("B-file pending (Z"+r.DefaultLevel+")", "#1f77b4", "", "B-file", r.DefaultLevel, false)
	add("B-clone pending", "#9467bd", "", "B-clone", r.DefaultLevel, false)
	add("F pending (floor)", "#2ca02c", "", "F", "", false)
	add("A no-op", "#d62728", "6,4", "A", "", true)
	add("B no-op", "#1f77b4", "6,4", "B", r.DefaultLevel, true)
	maxX, maxY := 1.0, 0.1
	for _, s := range ss {
		for _, p := range s.pts {
			maxX, maxY = math.Max(maxX, p[0]), math.Max(maxY, p[1])
		}
	}
	maxX, maxY = niceCeil(maxX), niceCeil(maxY*1.05)
	const W, H, L, R, T, B = 720, 420, 70, 230, 30, 50
	pw, ph := float64(W-L-R), float64(H-T-B)
	x := func(v float64) float64 { return L + v/maxX*pw }
	y := func(v float64) float64 { return T + ph - v/maxY*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">Upgrade downtime against database size (%s, %d cores)</text>`+"\n", L, r.Finished.Format("2006-01-02"), r.Machine.Cores)
	for i := 0; i <= 5; i++ {
		vx, vy := maxX*float64(i)/5, maxY*float64(i)/5
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x(vx), T, x(vx), T+int(ph), x(vx), H-B+16, round3(vx))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", L, y(vy), L+pw, y(vy), L-6, y(vy)+4, round3(vy))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">database size (MB)</text>`+"\n", L+pw/2, H-12)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">downtime (s, median)</text>`+"\n", T+ph/2)
	for i, s := range ss {
		var pts []string
		for _, p := range s.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p[0]), y(p[1])))
		}
		dash := ""
		if s.dash != "" {
			dash = ` stroke-dasharray="` + s.dash + `"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", s.color, dash, strings.Join(pts, " "))
		for _, p := range pts {
			xy := strings.Split(p, ",")
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], s.color)
		}
		ly := T + 10 + i*20
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/><text x="%d" y="%d">%s</text>`+"\n", W-R+15, ly, W-R+45, ly, s.color, dash, W-R+50, ly+4, s.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// why explains the pending-migration and restore results with the run's own
// numbers.
func (r *results) why(p func(string, ...any), main int) {
	a, bd, d, f := r.agg("A", "", false, main), r.agg("B-file", r.DefaultLevel, false, main), r.agg("D", r.DefaultLevel, false, main), r.agg("F", "", false, main)
	bc := r.agg("B-clone", r.DefaultLevel, false, main)
	b0 := r.agg("B-file", "0", false, main)
	small := r.agg("B-file", r.DefaultLevel, false, 0)
	smallF, smallD := r.agg("F", "", false, 0), r.agg("D", r.DefaultLevel, false, 0)

	if bc.n > 0 {
		p("\n## Where B-clone's downtime goes (%s)\n\n| part | seconds | share of B-clone |\n|---|---|---|\n", r.Sizes[main].Label)
		share := func(x float64) string { return fmt.Sprintf("%.0f%%", 100*x/bc.down) }
		p("| the clone: `CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY` (its checkpoints, the copy of %s of files, their fsync), as the binary times it | %.2f | %s |\n", r.Sizes[main].Label, bc.clone, share(bc.clone))
		p("| everything else: `openwatch` start, the eligibility checks (privileges, sessions, free space), the migration, `systemctl` | %.2f | %s |\n", bc.down-bc.clone, share(bc.down-bc.clone))
		p("| B-clone | %.2f | 100%% |\n", bc.down)
		p("\nB-clone's downtime is %s × A's and %s × B-file's (%s against %s and %s). ", ratio(bc.down, a.down), ratio(bc.down, bd.down), secs(bc.down), secs(a.down), secs(bd.down))
		if bc.down <= 0.3*a.down {
			p("That meets the 0.3 × A target with %.2f s to spare. ", 0.3*a.down-bc.down)
		} else {
			p("That misses the 0.3 × A target (%.2f s) by %.2f s; the clone alone is %s × A. ", 0.3*a.down, bc.down-0.3*a.down, ratio(bc.clone, a.down))
		}
		if main > 0 {
			sc, sa := r.agg("B-clone", r.DefaultLevel, false, 0), r.agg("A", "", false, 0)
			p("At %s: clone %s, B-clone %s, A %s (%s × A); from %s to %s the clone's time changes by a factor of %s for %s× the data. ",
				r.Sizes[0].Label, secs(sc.clone), secs(sc.down), secs(sa.down), ratio(sc.down, sa.down), r.Sizes[0].Label, r.Sizes[main].Label,
				ratio(bc.clone, sc.clone), ratio(float64(r.Sizes[main].Bytes), float64(r.Sizes[0].Bytes)))
		}
		p("The export, %s after the start (%s × B-file's whole downtime), is the price of the portable file, paid while the service runs.\n", secs(bc.export), ratio(bc.export, bd.down))
	}

	p("\n## Where B-file's downtime goes (%s)\n\n| part | seconds | share of B-file |\n|---|---|---|\n", r.Sizes[main].Label)
	share := func(x float64) string { return fmt.Sprintf("%.0f%%", 100*x/bd.down) }
	p("| F: reading every row out of PostgreSQL and the migration (the floor) | %.2f | %s |\n", f.down, share(f.down))
	p("| D − F: pg_dump beyond the floor (catalog queries, archive format, compression at Z%s, writing the file) | %.2f | %s |\n", r.DefaultLevel, d.down-f.down, share(d.down-f.down))
	p("| B-file − D: everything else (helper, `openwatch` start, SCRAM connections, lock, schema state, fsync of the restore point, the migration, `systemctl`) | %.2f | %s |\n", bd.down-d.down, share(bd.down-d.down))
	p("| B-file (default) | %.2f | 100%% |\n", bd.down)
	if d.down > bd.down || f.down > d.down {
		p("\nA part above is negative: the medians of B-file (%s–%s), D (%s–%s) and F (%s–%s) are closer together than their spread between repetitions, so this split does not hold in this run.\n",
			secs(bd.lo), secs(bd.hi), secs(d.lo), secs(d.hi), secs(f.lo), secs(f.hi))
	}
	p("\nThe 1.15 × F target leaves %.2f s for everything above the floor; B-file spends %.2f s there. ", 0.15*f.down, bd.down-f.down)
	if !math.IsNaN(b0.down) {
		p("Without compression (B-file-Z0) the downtime is %s (%.2f × F; B-file − B-file-Z0 = %.2f s). ", secs(b0.down), b0.down/f.down, bd.down-b0.down)
	}
	if main > 0 {
		p("At %s: F %s, D %s, B-file %s (B-file/F %s). ", r.Sizes[0].Label, secs(smallF.down), secs(smallD.down), secs(small.down), ratio(small.down, smallF.down))
	}
	if pd := r.agg("P", r.DefaultLevel, false, main); !math.IsNaN(pd.down) {
		p("A parallel dump (`pg_dump --format=directory -j %d --compress=%s`, not what the binary runs) takes %s (%s × F) against D's %s. ", r.Machine.Cores, r.DefaultLevel, secs(pd.down), ratio(pd.down, f.down), secs(d.down))
	}
	p("B-file/A is %s (A writes %s of uncompressed SQL in %s; B-file writes %s).\n", ratio(bd.down, a.down), human(a.dump), secs(a.down), human(bd.dump))
	plain, _ := r.restoreMedian("plain", "", 0)
	ow, _ := r.restoreMedian("openwatch", r.DefaultLevel, 0)
	swap, _ := r.restoreMedian("swap", "", 0)
	best, bestJ := math.Inf(1), 0
	for _, j := range r.Jobs {
		if t, _ := r.restoreMedian("pg_restore", r.DefaultLevel, j); t < best {
			best, bestJ = t, j
		}
	}
	p("\nRestoring: `psql -f` and `openwatch restore FILE` make PostgreSQL do the same work — COPY the rows in, then build the btree and GIN indexes: %s vs %s (%s × plain). ", secs(plain), secs(ow), ratio(ow, plain))
	switch {
	case bestJ > 1:
		p("The fastest `pg_restore -j` here (-j %d, %s, %s × plain) builds indexes in parallel but gives up the all-or-nothing transaction, and has %d cores to use. ", bestJ, secs(best), ratio(best, plain), r.Machine.Cores)
	case bestJ == 1:
		p("No `pg_restore -j` beat `-j 1` here (%s, %s × plain) with %d cores: parallel index builds did not pay. ", secs(best), ratio(best, plain), r.Machine.Cores)
	}
	if !math.IsNaN(swap) {
		p("The swap of a clone does none of that work: %s, %s × plain, %s × the file restore. ", secs(swap), ratio(swap, plain), ratio(swap, ow))
		if swap <= 0.02*plain {
			p("It meets the 0.02 × plain target.")
		} else {
			p("It misses the 0.02 × plain target (%s).", secs(0.02*plain))
		}
	}
	p("\n")
}

// loadResults reads a saved results file. Runs from before clone restore
// points called B-file plain "B".
func loadResults(file string) (*results, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for i, s := range r.Samples {
		if s.Approach == "B" && !s.Noop {
			r.Samples[i].Approach = "B-file"
		}
	}
	if len(r.Sizes) == 0 {
		return nil, fmt.Errorf("%s: no sizes", file)
	}
	return &r, nil
}

// render rewrites the report and the plot from a saved results file.
func render(o options, file string) error {
	r, err := loadResults(file)
	if err != nil {
		return err
	}
	if r.NewestFile == "" {
		files, _ := filepath.Glob("migrations/*.sql")
		sort.Strings(files)
		if len(files) > 0 {
			r.NewestFile = filepath.Base(files[len(files)-1])
		}
	}
	o.raw = file
	return r.write(o)
}

// crossCheck summarises a second saved run (e.g. more repetitions on a
// quieter machine) next to the main one.
func crossCheck(p func(string, ...any), file string) error {
	r, err := loadResults(file)
	if err != nil {
		return err
	}
	main := len(r.Sizes) - 1
	a, f := r.agg("A", "", false, main), r.agg("F", "", false, main)
	settings := r.Machine.PGSettings
	if settings == "" {
		settings = "not recorded: fsync=off"
	}
	p("\n## Cross-check: a second run (`%s`)\n\n`go run ./bench -size %s` with %d repetitions, finished %s, load average %s before / %s after, PostgreSQL %s, database %s (plain dump %s). Medians (min–max):\n\n| approach | downtime | × A | × F | restore point |\n|---|---|---|---|---|\n",
		file, r.Options, r.Reps, r.Finished.Format("2006-01-02 15:04 UTC"), r.Machine.LoadBefore, r.Machine.LoadAfter, settings, r.Sizes[main].Label, human(a.dump))
	row := func(name string, g agg, isB bool) {
		if g.n == 0 {
			return
		}
		ba, bf, size := "", "", "–"
		if isB {
			ba, bf = ratio(g.down, a.down), ratio(g.down, f.down)
		}
		if g.dump > 0 {
			size = fmt.Sprintf("%s (%s × plain)", human(g.dump), ratio(float64(g.dump), float64(a.dump)))
		}
		p("| %s | %s (%s–%s) | %s | %s | %s |\n", name, secs(g.down), secs(g.lo), secs(g.hi), ba, bf, size)
	}
	row("A plain pg_dump", a, false)
	for _, l := range r.Levels {
		name := "B-file-Z" + l
		if l == r.DefaultLevel {
			name += " (default)"
		}
		row(name, r.agg("B-file", l, false, main), true)
	}
	row("B-clone", r.agg("B-clone", r.DefaultLevel, false, main), true)
	row("D: B-file's pg_dump alone", r.agg("D", r.DefaultLevel, false, main), false)
	row(fmt.Sprintf("P: pg_dump -Fd -j %d", r.Machine.Cores), r.agg("P", r.DefaultLevel, false, main), false)
	row("F floor", f, false)
	bd, d := r.agg("B-file", r.DefaultLevel, false, main), r.agg("D", r.DefaultLevel, false, main)
	an, bn := r.agg("A", "", true, main), r.agg("B", r.DefaultLevel, true, main)
	p("\nB-file − D (everything but the dump) = %.2f s; D − F = %.2f s. No-op: A %s, B %s (helper wall time %s). ", bd.down-d.down, d.down-f.down, secs(an.down), secs(bn.down), secs(bn.wall))
	plain, _ := r.restoreMedian("plain", "", 0)
	ow, _ := r.restoreMedian("openwatch", r.DefaultLevel, 0)
	p("Restore: `psql -f` %s, `openwatch restore` (Z%s) %s (%s × plain). ", secs(plain), r.DefaultLevel, secs(ow), ratio(ow, plain))
	if swap, _ := r.restoreMedian("swap", "", 0); !math.IsNaN(swap) {
		p("Swap of a clone %s (%s × plain). ", secs(swap), ratio(swap, plain))
	}
	p("`migrate --check` median %s.\n", secs(r.Check.Median))
	r.rehearsalTable(p)
	return nil
}

// fileTable is issue 23's view of B-file: its downtime against A's in the
// same run at every size, part by part, and the file before and after its
// compression after the start. Samples from before B-file recorded its
// parts (older saved runs) show no table.
func (r *results) fileTable(p func(string, ...any)) {
	has := false
	for _, s := range r.Samples {
		if s.Parts != nil {
			has = true
		}
	}
	if !has {
		return
	}
	p("\n## B-file against A, part by part (issue 23)\n\n")
	p("While the service is stopped, B-file writes the restore point uncompressed (`pg_dump --format=custom --compress=0`, its pages handed to the disk every 200 ms as it grows, so the final fsync is short), verifies it and renames it into place; after `systemctl start`, `openwatch backup --export` compresses it at `BACKUP_COMPRESSION` into a partial file, checks that `pg_restore` makes byte for byte the same SQL of both, and renames it over the uncompressed one. Here the benchmark runs that step itself in the foreground after the helper, and times it (the helper calls it in the background).\n\n")
	p("| database | A | B-file | B-file/A (target ≤ 1.0) | ")
	for _, part := range fileParts {
		p("%s | ", part.key)
	}
	p("file at the start | after `backup --export` (time) | D: today's `-Z%s` file | compressed file ≤ D's |\n|---|---|---|---|", r.DefaultLevel)
	for range fileParts {
		p("---|")
	}
	p("---|---|---|---|\n")
	for i, d := range r.Sizes {
		a, bf, dd := r.agg("A", "", false, i), r.agg("B-file", r.DefaultLevel, false, i), r.agg("D", r.DefaultLevel, false, i)
		parts := map[string][]float64{}
		var before, compress []float64
		for _, s := range r.Samples {
			if s.Approach == "B-file" && s.Level == r.DefaultLevel && !s.Noop && s.Size == i && s.Parts != nil {
				for k, v := range s.Parts {
					parts[k] = append(parts[k], v)
				}
				before = append(before, float64(s.DowntimeBytes))
				if s.CompressSeconds > 0 {
					compress = append(compress, s.CompressSeconds)
				}
			}
		}
		if len(before) == 0 {
			continue
		}
		p("| %s | %s | %s | **%s** %s | ", d.Label, secs(a.down), secs(bf.down), ratio(bf.down, a.down), verdict(bf.down <= a.down, bf.down, a.down))
		for _, part := range fileParts {
			p("%s | ", secs(median(parts[part.key])))
		}
		sizeOK := "not measured"
		if bf.dump > 0 && dd.dump > 0 {
			sizeOK = yes(bf.dump <= dd.dump)
		}
		p("%s | %s (%s) | %s | %s |\n", human(int64(median(before))), human(bf.dump), secs(median(compress)), human(dd.dump), sizeOK)
	}
	p("\nThe parts, medians over the repetitions (they need not add up to the median downtime):\n\n")
	for _, part := range fileParts {
		p("- **%s**: %s\n", part.key, part.what)
	}
	p("\nThe file's size once compressed against D's (`pg_dump -Fc -Z%s`, the file today's way writes in the downtime) is the size target (no larger); both are read by the same `pg_restore`.\n", r.DefaultLevel)
}
