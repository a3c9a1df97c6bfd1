// Command bench measures the downtime of a package upgrade: the usual
// approach (A: stop, plain pg_dump, dbmate migrate, start), ours (B: the
// generated upgrade helper from dist/ with the real binary, its restore
// point a file (B-file) or a clone of the database (B-clone), exported to a
// file once the service runs), and the floor (F: the migration plus COPY of
// every table to nowhere); and the restores, among them the swap of a clone.
// The server runs durable (fsync, full_page_writes on). See
// docs/BENCHMARKS.md; run with `make bench BENCH_ARGS='-size quick'`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openwatch/openwatch/internal/pgtest"
)

const (
	mb = 1 << 20
	gb = 1 << 30
)

// parseSize accepts quick, 1GB, 512MB, 300M...
func parseSize(s string) (int64, error) {
	if s == "quick" {
		return 96 * mb, nil
	}
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"GB", gb}, {"G", gb}, {"MB", mb}, {"M", mb}} {
		if strings.HasSuffix(u, suf.s) {
			u, mult = strings.TrimSuffix(u, suf.s), suf.m
			break
		}
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("-size %q: want quick, or a size like 1GB or 256MB", s)
	}
	return int64(f * float64(mult)), nil
}

type options struct {
	sizeArg     string
	size        int64
	points      int
	reps        int
	restoreReps int
	checkRuns   int
	levels      []string
	jobs        []int
	out         string
	svg         string
	raw         string
	keep        bool
	rendering   bool
	also        string
	fs          []string
	fsReps      string
	fsRaw       string
	sizes       string
	only        []string
}

func main() {
	var o options
	var levels, jobs string
	flag.StringVar(&o.sizeArg, "size", "1GB", "largest database size: quick (96MB), or e.g. 1GB, 512MB")
	flag.IntVar(&o.points, "points", 2, "database sizes measured: size/4^(points-1) ... size")
	var only string
	flag.StringVar(&only, "only", "", "measure only these pending-migration approaches (e.g. A,B-file,D: issue 23's comparison), and no no-op upgrades, --check runs or restores")
	flag.StringVar(&o.sizes, "sizes", "", "the database sizes measured, instead of -size and -points, e.g. 512MB,1GB (the last is the largest)")
	flag.IntVar(&o.reps, "reps", 3, "repetitions of each upgrade measurement")
	flag.IntVar(&o.restoreReps, "restore-reps", 2, "repetitions of the plain and the default restore (alternatives run once)")
	flag.IntVar(&o.checkRuns, "check-runs", 25, "runs of openwatch migrate --check")
	flag.StringVar(&levels, "levels", "0,1,3,6", "BACKUP_COMPRESSION alternatives measured for B at the largest size")
	flag.StringVar(&jobs, "jobs", "1,2,4", "pg_restore -j values measured against the archive (what RESTORE_JOBS could buy)")
	flag.StringVar(&o.out, "out", "docs/BENCHMARKS.md", "report")
	flag.StringVar(&o.svg, "svg", "docs/benchmarks-downtime.svg", "plot")
	flag.StringVar(&o.raw, "raw", "bench/results/latest.json", "every sample, as JSON")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.StringVar(&o.also, "also", "", "add a summary of these other saved runs (comma-separated files) to the report")
	var fsSpecs string
	flag.StringVar(&fsSpecs, "fs", "", "instead of the default rows: PostgreSQL 18 (the cached root) on loop-mounted file systems, e.g. 'xfs-reflink:1GB,4GB ext4:1GB' (bench/fs.go)")
	flag.StringVar(&o.fsReps, "fs-reps", "3,2", "-fs: repetitions at each size (the last value for the rest)")
	flag.StringVar(&o.fsRaw, "fs-raw", "bench/results/pg18-fs.json", "-fs: every sample, as JSON, a path in the checkout (the report shows it when the file exists)")
	renderFile := flag.String("render", "", "only rewrite the report and plot from this saved results file")
	flag.Parse()
	if *renderFile != "" {
		o.rendering = true
		if root, err := repoRoot(); err == nil {
			os.Chdir(root)
		}
		if err := render(o, *renderFile); err != nil {
			fatal(err)
		}
		return
	}
	var err error
	if o.size, err = parseSize(o.sizeArg); err != nil {
		fatal(err)
	}
	o.levels = strings.Split(levels, ",")
	if only != "" {
		o.only = strings.Split(only, ",")
	}
	for _, j := range strings.Split(jobs, ",") {
		n, err := strconv.Atoi(j)
		if err != nil || n < 1 {
			fatal(fmt.Errorf("-jobs %q", jobs))
		}
		o.jobs = append(o.jobs, n)
	}
	if o.points < 1 || o.reps < 1 || o.restoreReps < 1 || o.checkRuns < 1 {
		fatal(fmt.Errorf("-points, -reps, -restore-reps and -check-runs must be at least 1"))
	}
	if fsSpecs != "" {
		specs, err := parseFS(strings.Fields(fsSpecs))
		if err != nil {
			fatal(err)
		}
		var reps []int
		for _, r := range strings.Split(o.fsReps, ",") {
			n, err := strconv.Atoi(r)
			if err != nil || n < 1 {
				fatal(fmt.Errorf("-fs-reps %q", o.fsReps))
			}
			reps = append(reps, n)
		}
		if os.Geteuid() != 0 {
			fatal(fmt.Errorf("run as root: -fs chroots into PostgreSQL 18's root and mounts file systems"))
		}
		if os.Getenv(inRootVar) == "" {
			// Then the report: the default rows from their saved file, and these.
			if err = runInRoot(os.Args[1:]); err == nil {
				o.rendering = true
				err = render(o, o.raw)
			}
		} else {
			err = runFS(o, specs, reps)
		}
		if err != nil {
			fatal(err)
		}
		return
	}
	if os.Geteuid() != 0 {
		fatal(fmt.Errorf("run as root: the benchmark starts PostgreSQL as the postgres user and runs the upgrade helper in a private mount namespace"))
	}
	if err := run(o); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(o options) error {
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
	m := machineInfo()
	logf("machine: %s, %d cores, load %s", m.CPU, runtime.NumCPU(), m.LoadBefore)
	peak := make(chan float64)
	go samplePeakLoad(ctx, peak)

	// Durable, as PostgreSQL ships: a clone's cost is largely fsyncs.
	srv, err := pgtest.StartWith(pgtest.StartOptions{Fsync: true})
	if err != nil {
		return err
	}
	defer srv.Stop()
	e, err := newEnv(ctx, srv, root, o)
	if err != nil {
		return err
	}
	e.noRehearse = o.only != nil
	if !o.keep {
		defer os.RemoveAll(e.work)
	} else {
		logf("work directory: %s", e.work)
	}
	m.PG, m.PGSettings = e.pgInfo(ctx)
	m.DataFS = e.dataFS(ctx)
	logf("PostgreSQL %s: %s; data directory on %s", m.PG, m.PGSettings, m.DataFS)

	sizes := make([]int64, o.points)
	for i := range sizes {
		sizes[len(sizes)-1-i] = o.size >> (2 * i)
	}
	if o.sizes != "" {
		sizes = nil
		for _, a := range strings.Split(o.sizes, ",") {
			n, err := parseSize(a)
			if err != nil {
				return err
			}
			if len(sizes) > 0 && n <= sizes[len(sizes)-1] {
				return fmt.Errorf("-sizes %q: want increasing sizes", o.sizes)
			}
			sizes = append(sizes, n)
		}
		o.sizeArg = o.sizes
	}
	if o.only != nil {
		o.sizeArg += " -only " + strings.Join(o.only, ",")
	}
	res := &results{Options: o.sizeArg, Reps: o.reps, RestoreReps: o.restoreReps, DefaultLevel: e.defLevel,
		DefaultJobs: e.defJobs, Levels: o.levels, Jobs: o.jobs, Newest: e.newest, NewestFile: e.newestFile, Machine: m}

	if err := e.loader.loadHosts(ctx); err != nil {
		return fmt.Errorf("load hosts: %w", err)
	}
	for si, target := range sizes {
		main := si == len(sizes)-1
		logf("growing the database to %s", human(target))
		t0 := time.Now()
		actual, err := e.loader.growTo(ctx, target, logf)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		ds := e.describe(ctx, actual)
		ds.LoadSeconds = time.Since(t0).Seconds()
		res.Sizes = append(res.Sizes, ds)
		logf("database: %s (%d hosts, %d scan results), loaded in %.0fs", human(actual), ds.Hosts, ds.Scans, ds.LoadSeconds)

		// Pending migration: A, B-file (default and, at the largest size,
		// the compression alternatives), B-clone, D, F, interleaved, order
		// rotated every repetition.
		variants := []variant{{"A", ""}, {"B-file", e.defLevel}, {"B-clone", e.defLevel}, {"D", e.defLevel}, {"F", ""}}
		if main {
			for _, l := range o.levels {
				if l != e.defLevel {
					variants = append(variants, variant{"B-file", l})
				}
			}
			variants = append(variants, variant{"P", e.defLevel})
		}
		if o.only != nil {
			var kept []variant
			for _, v := range variants {
				if contains(o.only, v.approach) {
					kept = append(kept, v)
				}
			}
			variants = kept
		}
		for rep := 0; rep < o.reps; rep++ {
			for k := range variants {
				v := variants[(k+rep)%len(variants)]
				if err := e.toPending(ctx); err != nil {
					return err
				}
				s, err := e.measure(ctx, v, false, main && rep == o.reps-1)
				if err != nil {
					return fmt.Errorf("%s%s pending at %s: %w", v.approach, v.level, human(actual), err)
				}
				s.Size, s.Rep = si, rep
				res.Samples = append(res.Samples, s)
				extra := ""
				if s.RestorePoint == "clone" {
					extra = fmt.Sprintf(", clone %.3fs, export %.3fs after start", s.CloneSeconds, s.ExportSeconds)
				}
				logf("  pending %-7s %-3s rep %d: downtime %.3fs, wall %.3fs, restore point %s%s, peak RSS %d MB",
					v.approach, v.level, rep+1, s.Downtime, s.Wall, human(s.DumpBytes), extra, s.MaxRSSKB/1024)
			}
		}
		// No-op upgrade: A and B.
		if err := e.toHead(ctx); err != nil {
			return err
		}
		for rep := 0; rep < o.reps && o.only == nil; rep++ {
			for k, v := range []variant{{"A", ""}, {"B", e.defLevel}} {
				if rep%2 == 1 {
					v = []variant{{"B", e.defLevel}, {"A", ""}}[k]
				}
				s, err := e.measure(ctx, v, true, false)
				if err != nil {
					return fmt.Errorf("%s no-op at %s: %w", v.approach, human(actual), err)
				}
				s.Size, s.Rep = si, rep
				res.Samples = append(res.Samples, s)
				logf("  no-op   %-2s rep %d: downtime %.3fs, wall %.3fs", v.approach, rep+1, s.Downtime, s.Wall)
			}
		}
		if main && o.only == nil {
			logf("openwatch migrate --check, %d runs", o.checkRuns)
			if res.Check, err = e.checkLatency(ctx, o.checkRuns); err != nil {
				return err
			}
			logf("restores into an empty database")
			if res.Restores, err = e.restores(ctx, o); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	m.LoadAfter = loadavg()
	select {
	case m.LoadPeak = <-peak:
	case <-ctx.Done():
		return ctx.Err()
	}
	res.Machine = m
	res.Seconds = time.Since(started).Seconds()
	res.Finished = time.Now().UTC()
	return res.write(o)
}

// samplePeakLoad samples the 1-minute load average every 30 seconds and
// sends the highest seen when asked (a receive on peak), or ends with ctx.
func samplePeakLoad(ctx context.Context, peak chan<- float64) {
	highest := load1()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			highest = max(highest, load1())
		case peak <- max(highest, load1()):
			return
		}
	}
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "migrations")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from the openwatch source tree")
		}
		dir = parent
	}
}

func human(b int64) string {
	switch {
	case b >= gb:
		return fmt.Sprintf("%.2f GB", float64(b)/gb)
	case b >= mb:
		return fmt.Sprintf("%.1f MB", float64(b)/mb)
	case b >= 1024:
		return fmt.Sprintf("%.1f kB", float64(b)/1024)
	}
	return fmt.Sprintf("%d B", b)
}
