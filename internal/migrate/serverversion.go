package migrate

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The PostgreSQL majors openwatch supports: each is tested (make test's
// PostgreSQL matrix runs 13, 15, 17 and 18; 14 and 16 sit between tested
// ones). Below OldestMajor the binary changes nothing.
const (
	OldestMajor = 13
	NewestMajor = 18
)

// TooOldError is a server older than OldestMajor.
type TooOldError struct {
	VersionNum int    // server_version_num
	Version    string // server_version, as the server says it
}

func (e *TooOldError) Error() string {
	return fmt.Sprintf("the database server is PostgreSQL %s (server_version_num %d); openwatch supports PostgreSQL %d to %d",
		e.Version, e.VersionNum, OldestMajor, NewestMajor)
}

// CheckServerVersion decides whether openwatch may change a database on a
// server of version versionNum (server_version_num; version is the
// server_version text for the message): a *TooOldError below OldestMajor.
// A server newer than NewestMajor is allowed, with a warning ("" otherwise):
// PostgreSQL keeps what openwatch uses, but that major was not tested.
func CheckServerVersion(versionNum int, version string) (warning string, err error) {
	switch major := versionNum / 10000; {
	case major < OldestMajor:
		return "", &TooOldError{VersionNum: versionNum, Version: version}
	case major > NewestMajor:
		return fmt.Sprintf("the database server is PostgreSQL %s, newer than the newest openwatch was tested with (%d)", version, NewestMajor), nil
	}
	return "", nil
}

// ServerVersion reads the server's server_version_num and server_version.
func ServerVersion(ctx context.Context, conn *pgx.Conn) (int, string, error) {
	var num int
	var text string
	if err := conn.QueryRow(ctx, "select current_setting('server_version_num')::int, current_setting('server_version')").Scan(&num, &text); err != nil {
		return 0, "", fmt.Errorf("read the server's version: %w", err)
	}
	return num, text, nil
}
