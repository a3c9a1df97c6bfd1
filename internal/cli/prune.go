package cli

import (
	"fmt"
	"time"

	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dump"
)

// pruneRestorePoints is `openwatch backup --prune`, which the daily cleanup
// unit runs: it removes the restore points in dir (default BACKUP_DIR) older
// than BACKUP_RETENTION_DAYS, always keeping the newest. It reads upgrade.conf
// with the one parser every command uses and needs no database. Each removed
// file gets a line on stdout, then a summary.
func (a *app) pruneRestorePoints(dir string, list bool) int {
	if list {
		return a.usageError("backup: --list and --prune do not go together")
	}
	cfg, err := config.LoadOptions{ConfPath: a.configPath, ConfRequired: a.configGiven, NoDSN: true}.Load()
	if err != nil {
		a.errorf("invalid configuration, nothing was pruned: %v\nFix the file, then run: openwatch backup --prune", err)
		return ExitConfig
	}
	if dir == "" {
		dir = cfg.BackupDir
	}
	res, err := dump.Prune(dir, cfg.RetentionDays, time.Now(), func(rp dump.RestorePoint) {
		fmt.Fprintf(a.Stdout, "removed %s (taken %s)\n", rp.Name, rp.Created.Format(time.RFC3339))
	})
	if err != nil {
		a.errorf("pruning restore points: %v\n%d removed before the error. Fix the cause, then run: openwatch backup --prune", err, len(res.Removed))
		return ExitError
	}
	fmt.Fprintf(a.Stdout, "%d restore point(s) older than %d days removed from %s; %d kept (the newest is always kept)\n",
		len(res.Removed), cfg.RetentionDays, dir, res.Kept)
	return ExitOK
}
