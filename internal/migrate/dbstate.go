package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/dsn"
)

// dbStateQuery asks the server what has been written to the database: the
// rows inserted, updated and deleted in its tables since its statistics
// were reset (and when that was), and each relation's storage (a TRUNCATE,
// a rewrite or DDL changes it). Autovacuum and ANALYZE change neither.
// Statistics are lost by a crash: the state then differs, which only ever
// costs a new restore point.
const dbStateQuery = `
SELECT coalesce((SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables), 0)::text,
       coalesce((SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database()), ''),
       coalesce((SELECT string_agg(c.oid::text || ':' || c.relfilenode::text || ':' || c.relkind::text, ',' ORDER BY c.oid)
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'), ''),
       coalesce((SELECT string_agg(s.seqrelid::text || ':' || coalesce(pg_sequence_last_value(s.seqrelid)::text, '-'), ',' ORDER BY s.seqrelid)
                   FROM pg_sequence s WHERE has_sequence_privilege(s.seqrelid, 'SELECT')), '')`

// DatabaseState returns a short digest of what the server says has been
// written to the database (dbStateQuery): two equal states mean nothing
// wrote rows, changed the schema or advanced a sequence in between.
func DatabaseState(ctx context.Context, d *dsn.DSN) (string, error) {
	conn, err := d.Connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var tuples, reset, rels, seqs string
	if err := conn.QueryRow(ctx, dbStateQuery).Scan(&tuples, &reset, &rels, &seqs); err != nil {
		return "", fmt.Errorf("read the database's statistics: %w", err)
	}
	sum := sha256.Sum256([]byte(reset + "\n" + rels + "\n" + seqs))
	return "v1:" + tuples + ":" + hex.EncodeToString(sum[:16]), nil
}

// SettledDatabaseState is DatabaseState once the server's statistics have
// taken in the sessions that just ended (a session reports its counts as it
// exits, and the server takes them in shortly after): the same state read
// twice, a second apart, at most a few seconds.
func SettledDatabaseState(ctx context.Context, d *dsn.DSN) (string, error) {
	prev, err := DatabaseState(ctx, d)
	for i := 0; err == nil && i < 5; i++ {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
		var now string
		if now, err = DatabaseState(ctx, d); err == nil && now == prev {
			return now, nil
		}
		prev = now
	}
	return prev, err
}

// OtherSessions returns how many client sessions other than conn's are
// connected to its database: a session that is still open may have written
// rows whose counts the server has not taken in yet.
func OtherSessions(ctx context.Context, conn *pgx.Conn) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&n)
	return n, err
}
