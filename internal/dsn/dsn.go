// Package dsn turns the operator's OPENWATCH_DATABASE_DSN (a postgres:// URL
// or a keyword/value string) into the three forms the binary needs: a pgx
// config for its own connections, a lib/pq URL for dbmate, and PG* environment
// variables for pg_dump, pg_restore and psql. The password never goes on a
// command line.
package dsn

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/openwatch/openwatch/internal/redact"
)

// DefaultSSLMode is libpq's default, used when neither the DSN nor PGSSLMODE
// names one. lib/pq would default to require; pgx and libpq to prefer.
const DefaultSSLMode = "prefer"

// ErrMultipleHosts is returned for DSNs that list several hosts.
var ErrMultipleHosts = errors.New("the DSN names several hosts; openwatch migrates exactly one server, so name one host")

// DSN is a parsed connection string.
type DSN struct {
	Config   *pgx.ConnConfig   // for the binary's own connections
	SSLMode  string            // exactly as the operator wrote it, else PGSSLMODE, else prefer
	Redactor *redact.Redactor  // masks the password
	params   map[string]string // raw settings as written (PG* env, then the DSN)
}

// Parse parses s. Errors never contain the password.
func Parse(s string) (*DSN, error) {
	params, rawErr := rawSettings(s)
	r := redact.New(params["password"])
	cfg, err := pgx.ParseConfig(s)
	if err != nil {
		return nil, r.Error(fmt.Errorf("OPENWATCH_DATABASE_DSN is not a valid PostgreSQL connection string: %w", err))
	}
	if rawErr != nil {
		return nil, r.Error(fmt.Errorf("OPENWATCH_DATABASE_DSN: %w", rawErr))
	}
	if cfg.Password != "" {
		r = redact.New(cfg.Password)
	}
	for _, fb := range cfg.Fallbacks {
		if fb.Host != cfg.Host || fb.Port != cfg.Port {
			return nil, ErrMultipleHosts
		}
	}
	mode := params["sslmode"]
	if mode == "" {
		mode = DefaultSSLMode
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return &DSN{Config: cfg, SSLMode: mode, Redactor: r, params: params}, nil
}

// Describe names the database for messages: "db on host:port" (no secrets).
func (d *DSN) Describe() string {
	return fmt.Sprintf("database %q on %s port %d as %q", d.Config.Database, d.Config.Host, d.Config.Port, d.Config.User)
}

// childParams maps connection settings to the libpq environment variables
// pg_dump, pg_restore and psql read.
var childParams = map[string]string{
	"sslcert":              "PGSSLCERT",
	"sslkey":               "PGSSLKEY",
	"sslrootcert":          "PGSSLROOTCERT",
	"sslcrl":               "PGSSLCRL",
	"sslcrldir":            "PGSSLCRLDIR",
	"sslsni":               "PGSSLSNI",
	"sslnegotiation":       "PGSSLNEGOTIATION",
	"sslcertmode":          "PGSSLCERTMODE",
	"connect_timeout":      "PGCONNECT_TIMEOUT",
	"target_session_attrs": "PGTARGETSESSIONATTRS",
	"channel_binding":      "PGCHANNELBINDING",
	"gssencmode":           "PGGSSENCMODE",
	"krbsrvname":           "PGKRBSRVNAME",
	"require_auth":         "PGREQUIREAUTH",
	"requirepeer":          "PGREQUIREPEER",
	"options":              "PGOPTIONS",
	"application_name":     "PGAPPNAME",
}

// ChildEnv is the complete environment for a PostgreSQL client program:
// PATH and a C locale from this process, and the connection as PG* variables.
func (d *DSN) ChildEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/sbin:/usr/bin:/sbin:/bin"
	}
	env := []string{
		"PATH=" + path,
		"LC_ALL=C",
		"PGHOST=" + d.Config.Host,
		"PGPORT=" + strconv.Itoa(int(d.Config.Port)),
		"PGUSER=" + d.Config.User,
		"PGDATABASE=" + d.Config.Database,
		"PGSSLMODE=" + d.SSLMode,
		"PGAPPNAME=openwatch",
	}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		env = append(env, "TMPDIR="+tmp)
	}
	if d.Config.Password != "" {
		env = append(env, "PGPASSWORD="+d.Config.Password)
	}
	for _, k := range sortedKeys(childParams) {
		if v, ok := d.params[k]; ok && v != "" {
			env = append(env, childParams[k]+"="+v)
		}
	}
	return env
}

// libpqParams are the settings lib/pq understands besides host, port, user,
// password, dbname and sslmode.
var libpqParams = []string{
	"sslcert", "sslkey", "sslrootcert", "sslsni", "sslnegotiation",
	"connect_timeout", "target_session_attrs", "krbsrvname", "options",
}

// DbmateURL is the URL dbmate hands to lib/pq. The host always travels as the
// host query parameter: dbmate rebuilds the authority as "host:port", which
// would break IPv6 literals and cannot express a socket directory. sslmode is
// always explicit, because lib/pq's own default (require) differs from libpq's.
func (d *DSN) DbmateURL() *url.URL {
	q := url.Values{}
	q.Set("host", d.Config.Host)
	q.Set("sslmode", d.SSLMode)
	for _, k := range libpqParams {
		if v := d.params[k]; v != "" {
			q.Set(k, v)
		}
	}
	for k, v := range d.Config.RuntimeParams {
		q.Set(k, v)
	}
	u := &url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort("", strconv.Itoa(int(d.Config.Port))),
		Path:     "/" + d.Config.Database,
		RawQuery: q.Encode(),
	}
	if d.Config.Password != "" {
		u.User = url.UserPassword(d.Config.User, d.Config.Password)
	} else {
		u.User = url.User(d.Config.User)
	}
	return u
}

// envSettings mirrors libpq's environment variables, which the DSN overrides.
var envSettings = map[string]string{
	"PGHOST": "host", "PGPORT": "port", "PGDATABASE": "dbname", "PGUSER": "user",
	"PGPASSWORD": "password", "PGSSLMODE": "sslmode", "PGSSLCERT": "sslcert",
	"PGSSLKEY": "sslkey", "PGSSLROOTCERT": "sslrootcert", "PGSSLCRL": "sslcrl",
	"PGSSLSNI": "sslsni", "PGSSLNEGOTIATION": "sslnegotiation", "PGSSLCERTMODE": "sslcertmode",
	"PGCONNECT_TIMEOUT": "connect_timeout", "PGTARGETSESSIONATTRS": "target_session_attrs",
	"PGCHANNELBINDING": "channel_binding", "PGGSSENCMODE": "gssencmode",
	"PGKRBSRVNAME": "krbsrvname", "PGREQUIREAUTH": "require_auth", "PGOPTIONS": "options",
	"PGAPPNAME": "application_name",
}

// rawSettings returns the settings exactly as written: PG* environment first,
// then the DSN's own.
func rawSettings(s string) (map[string]string, error) {
	settings := map[string]string{}
	for env, key := range envSettings {
		if v := os.Getenv(env); v != "" {
			settings[key] = v
		}
	}
	var own map[string]string
	var err error
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		own, err = urlSettings(s)
	} else {
		own, err = keywordValueSettings(s)
	}
	for k, v := range own {
		settings[k] = v
	}
	return settings, err
}

// urlSettings reads the password and the query parameters of a URL. It is
// deliberately lenient about the host: libpq and pgx accept a percent-encoded
// socket directory there, which net/url rejects.
func urlSettings(s string) (map[string]string, error) {
	_, rest, _ := strings.Cut(s, "://")
	rest, rawQuery, _ := strings.Cut(rest, "?")
	authority, _, _ := strings.Cut(rest, "/")
	settings := map[string]string{}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		if _, pw, ok := strings.Cut(authority[:at], ":"); ok {
			p, err := url.PathUnescape(pw)
			if err != nil {
				return settings, errors.New("the password in the URL is not percent-encoded correctly")
			}
			settings["password"] = p
		}
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return settings, errors.New("the URL's query string is not percent-encoded correctly")
	}
	for k, v := range q {
		if len(v) > 0 {
			settings[k] = v[len(v)-1]
		}
	}
	if v := settings["ssl"]; v == "true" && settings["sslmode"] == "" {
		settings["sslmode"] = "require"
	}
	return settings, nil
}

// keywordValueSettings follows libpq's conninfo grammar: key = value pairs,
// values bare or single-quoted, backslash escapes the next character.
func keywordValueSettings(s string) (map[string]string, error) {
	settings := map[string]string{}
	const space = " \t\n\r\v\f"
	s = strings.TrimLeft(s, space)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return settings, errors.New(`missing "=" in keyword/value connection string`)
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], space)
		var val strings.Builder
		quoted := strings.HasPrefix(s, "'")
		if quoted {
			s = s[1:]
		}
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if quoted && c == '\'' || !quoted && strings.IndexByte(space, c) >= 0 {
				break
			}
			if c == '\\' && i+1 < len(s) {
				i++
				c = s[i]
			}
			val.WriteByte(c)
		}
		if quoted {
			if i >= len(s) {
				return settings, errors.New("unterminated quoted value in keyword/value connection string")
			}
			i++
		}
		settings[key] = val.String()
		s = strings.TrimLeft(s[i:], space)
	}
	return settings, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
