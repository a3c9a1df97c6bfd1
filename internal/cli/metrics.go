package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/metrics"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/version"
)

// metricsDatabaseWait bounds how long writing the metrics waits for the
// database: the file says "unreachable" rather than hold up an upgrade's
// report or the cleanup.
const metricsDatabaseWait = 10 * time.Second

// writeMetrics rewrites METRICS_DIR/openwatch.prom (internal/metrics) from
// what this binary knows: the upgrade journal, the schema state, the
// restore points. It does nothing when METRICS_DIR is not set, and never
// fails its caller: a problem is one warning line naming the setting. It
// prints nothing else, so callers may run it after their own last word.
func (a *app) writeMetrics(ctx context.Context) {
	cfg, err := config.LoadOptions{ConfPath: a.configPath, SecretsPath: a.secretsPath, ConfRequired: a.configGiven}.Load()
	if cfg.MetricsDir == "" {
		return // off, or upgrade.conf unreadable (its error is the caller's to report)
	}
	s := a.gatherMetrics(ctx, cfg, err == nil)
	if err := metrics.Write(cfg.MetricsDir, metrics.Render(s)); err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: the upgrade state for monitoring was not written: %v (METRICS_DIR in %s)\n", err, a.configPath)
	}
}

// gatherMetrics reads the state; haveDSN says whether the configuration
// (and so the DSN) loaded.
func (a *app) gatherMetrics(ctx context.Context, cfg config.Config, haveDSN bool) metrics.State {
	s := metrics.State{Written: time.Now(), PackageVersion: version.Version}
	if known, err := migrate.Known(a.migrations); err == nil && len(known) > 0 {
		s.BinaryHead = known[len(known)-1].Version
	}
	if l := a.lastUpgrade(); l != nil {
		u := &metrics.Upgrade{Outcome: l.Outcome, Phase: l.Phase, Failed: l.failed()}
		if t, err := time.Parse(time.RFC3339, l.Updated); err == nil {
			u.Updated = t
		}
		// SERVICE_STOPPED: the upgrade left a service that ran stopped.
		u.LeftStopped = u.Failed && l.ServiceStopped
		s.Upgrade = u
	}
	files, ferr := dump.List(cfg.BackupDir)
	for _, f := range files {
		s.RestorePoints = append(s.RestorePoints, metrics.RestorePoint{Kind: f.Kind, Created: f.Created, Size: f.Size})
	}
	s.RestorePointsKnown = ferr == nil
	if !haveDSN || cfg.DSN == "" {
		return s
	}
	d, err := dsn.Parse(cfg.DSN)
	if err != nil {
		return s
	}
	ctx, cancel := context.WithTimeout(ctx, metricsDatabaseWait)
	defer cancel()
	conn, err := d.Connect(ctx)
	if err != nil {
		return s
	}
	defer conn.Close(context.Background())
	st, err := migrate.ReadState(ctx, conn, a.migrations)
	if err != nil {
		return s
	}
	s.DatabaseReachable = true
	s.SchemaVersion, s.Pending, s.SchemaNewer = st.Current, len(st.Pending), st.Newer()
	points, err := clone.List(ctx, conn)
	if err != nil {
		s.RestorePointsKnown = false // the count would be short
		return s
	}
	for _, p := range points {
		if p.Source == d.Config.Database {
			s.RestorePoints = append(s.RestorePoints, metrics.RestorePoint{Kind: p.Kind, Created: p.Created, Size: p.Size})
		}
	}
	return s
}
