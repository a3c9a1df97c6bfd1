// Package migrations embeds the dbmate migrations shipped in the binary.
package migrations

import "embed"

// FS holds the *.sql migrations at its root, named YYYYMMDDHHMMSS_name.sql.
//
//go:embed *.sql
var FS embed.FS
