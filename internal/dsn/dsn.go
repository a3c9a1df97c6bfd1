// Package dsn turns the operator's OPENWATCH_DATABASE_DSN (a postgres:// URL
// or a keyword/value string) into the three forms the binary needs: a pgx
// config for its own connections, a lib/pq URL for dbmate, and PG* environment
// variables for pg_dump, pg_restore and psql. The password never goes on a
// command line.
package dsn

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgservicefile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/openwatch/openwatch/internal/redact"
)

// DefaultSSLMode is libpq's default, used when neither the DSN nor PGSSLMODE
// names one. lib/pq would default to require; pgx and libpq to prefer.
const DefaultSSLMode = "prefer"

// ErrMultipleHosts is returned for DSNs that list several hosts.
var ErrMultipleHosts = errors.New("the DSN names several hosts; openwatch migrates exactly one server, so name one host")

// DSN is a parsed connection string.
type DSN struct {
	Config   *pgx.ConnConfig  // for the binary's own connections
	SSLMode  string           // the effective sslmode, whatever set it; else prefer
	Redactor *redact.Redactor // masks the password and other secrets
	// params are the effective libpq settings: PG* environment, then the
	// service file's, then the connection string's own, as pgx merges them.
	params map[string]string
}

// secretKeywords hold secrets; the Redactor masks each of them.
var secretKeywords = []string{"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"}

// Parse parses s, a URL or keyword/value connection string, with the PG*
// environment and the pg_service file it may name. Errors never contain any
// part of s or of a setting's value: they name the keyword and say what is
// wrong.
func Parse(s string) (*DSN, error) {
	own, err := connStringSettings(s)
	if err != nil {
		return nil, fmt.Errorf("OPENWATCH_DATABASE_DSN is not a valid PostgreSQL connection string: %w", err)
	}
	st, err := effectiveSettings(own)
	if err != nil {
		return nil, err
	}
	var secrets []string
	for _, k := range secretKeywords {
		secrets = append(secrets, st.values[k])
	}
	r := redact.New(secrets...)
	cfg, err := pgx.ParseConfig(s)
	if err != nil {
		return nil, r.Error(st.describe(err))
	}
	if cfg.Password != "" && cfg.Password != st.values["password"] {
		r = redact.New(append(secrets, cfg.Password)...)
	}
	for _, fb := range cfg.Fallbacks {
		if fb.Host != cfg.Host || fb.Port != cfg.Port {
			return nil, ErrMultipleHosts
		}
	}
	if err := st.adjust(cfg); err != nil {
		return nil, err
	}
	mode := st.values["sslmode"]
	switch {
	case mode != "":
	case st.values["sslrootcert"] == "system":
		mode = "verify-full" // libpq's and pgx's default for the system CAs
	case st.values["sslnegotiation"] == "direct":
		mode = "require" // direct TLS cannot fall back to plain text
	default:
		mode = DefaultSSLMode
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return &DSN{Config: cfg, SSLMode: mode, Redactor: r, params: st.values}, nil
}

// adjust keeps libpq's connection keywords out of the settings pgx sends to
// the server (it sends every keyword it does not know, and the server refuses
// unknown ones), and applies the few it can honour.
func (st *settings) adjust(cfg *pgx.ConnConfig) error {
	for k := range cfg.RuntimeParams {
		if kw, ok := keywords[k]; ok && !kw.server {
			delete(cfg.RuntimeParams, k)
		}
	}
	if v := st.values["fallback_application_name"]; v != "" && cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = v
	}
	if st.values["gssencmode"] == "require" {
		return fmt.Errorf("invalid database connection settings: gssencmode (%s) is require, but openwatch's own connections cannot use GSSAPI encryption; use sslmode for encryption instead", st.source["gssencmode"])
	}
	if addr := st.values["hostaddr"]; addr != "" {
		if st.values["host"] == "" {
			return fmt.Errorf("invalid database connection settings: hostaddr (%s) is set without host; set host to the server's name as well", st.source["hostaddr"])
		}
		if strings.Contains(addr, ",") {
			return ErrMultipleHosts
		}
		cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{addr}, nil }
	}
	return nil
}

// Describe names the database for messages (no secrets, and nothing about
// where the settings came from).
func (d *DSN) Describe() string {
	where := "on " + d.Config.Host + " port " + strconv.Itoa(int(d.Config.Port))
	if strings.HasPrefix(d.Config.Host, "/") {
		where = "on the local socket in " + d.Config.Host + " (port " + strconv.Itoa(int(d.Config.Port)) + ")"
	}
	return fmt.Sprintf("database %q %s as %q", d.Config.Database, where, d.Config.User)
}

// childSkip are settings ChildEnv sets from the parsed config, or must not
// pass at all: the service is already resolved into the other settings, and
// handing it on would let the service file override what the connection
// string set (libpq ranks a service above the environment).
var childSkip = map[string]bool{
	"host": true, "port": true, "user": true, "dbname": true, "password": true,
	"sslmode": true, "service": true, "servicefile": true,
}

// ChildEnv is the complete environment for a PostgreSQL client program:
// PATH and a C locale from this process, and the effective connection
// settings as PG* variables. Settings libpq has no variable for (keepalives*,
// tcp_user_timeout, sslpassword, …) cannot be passed this way.
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
	}
	if d.params["application_name"] == "" {
		env = append(env, "PGAPPNAME=openwatch")
	}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		env = append(env, "TMPDIR="+tmp)
	}
	if d.Config.Password != "" {
		env = append(env, "PGPASSWORD="+d.Config.Password)
	}
	for _, k := range slices.Sorted(maps.Keys(d.params)) {
		kw := keywords[k]
		if v := d.params[k]; v != "" && kw.env != "" && !childSkip[k] {
			env = append(env, kw.env+"="+v)
		}
	}
	return env
}

// DbmateURL is the URL dbmate hands to lib/pq. The host always travels as the
// host query parameter: dbmate rebuilds the authority as "host:port", which
// would break IPv6 literals and cannot express a socket directory. sslmode is
// always explicit, because lib/pq's own default (require) differs from libpq's.
// Only settings lib/pq understands are passed: it sends any other query
// parameter to the server as a setting, which the server refuses.
func (d *DSN) DbmateURL() *url.URL {
	q := url.Values{}
	for k, v := range d.Config.RuntimeParams {
		if k != "client_encoding" { // lib/pq insists on UTF8 itself
			q.Set(k, v)
		}
	}
	for k, v := range d.params {
		if kw := keywords[k]; kw.pq && v != "" && !childSkip[k] && k != "passfile" {
			q.Set(k, v)
		}
	}
	q.Set("host", d.Config.Host)
	q.Set("sslmode", d.SSLMode)
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

// settings are the effective connection settings and where each came from.
type settings struct {
	values map[string]string
	source map[string]string // "in OPENWATCH_DATABASE_DSN", "in PGPORT", …
	// serviceFromString: the service name or file path was written in the
	// connection string, so messages must not quote it (it may be a piece of
	// a mis-split password).
	serviceFromString bool
	serviceFile       string
}

// effectiveSettings merges, like pgx (and libpq): PG* environment, then the
// service's settings, then the connection string's own.
func effectiveSettings(own map[string]string) (*settings, error) {
	st := &settings{values: map[string]string{}, source: map[string]string{}}
	env := map[string]string{}
	for k, kw := range keywords {
		if kw.env != "" {
			if v := os.Getenv(kw.env); v != "" {
				env[k] = v
				st.set(k, v, "in the environment variable "+kw.env)
			}
		}
	}
	for k, v := range own {
		st.set(k, v, "in OPENWATCH_DATABASE_DSN")
	}
	name := st.values["service"]
	if name == "" {
		return st, nil
	}
	_, nameInString := own["service"]
	_, fileInString := own["servicefile"]
	st.serviceFromString = nameInString || fileInString
	st.serviceFile = st.values["servicefile"]
	if st.serviceFile == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, errors.New("invalid database connection settings: a service is named, but there is no home directory to find .pg_service.conf in; set PGSERVICEFILE")
		}
		st.serviceFile = filepath.Join(home, ".pg_service.conf")
	}
	sf, err := pgservicefile.ReadServicefile(st.serviceFile)
	if err != nil {
		return nil, fmt.Errorf("invalid database connection settings: the service file %s cannot be read (%s); fix the file or the service setting", st.quoteFile(), fileProblem(err, "it is not a valid service file"))
	}
	svc, err := sf.GetService(name)
	if err != nil {
		return nil, fmt.Errorf("invalid database connection settings: the service %s is not defined in the service file %s", st.quoteService(name), st.quoteFile())
	}
	merged := &settings{values: map[string]string{}, source: map[string]string{},
		serviceFromString: st.serviceFromString, serviceFile: st.serviceFile}
	for k, v := range env {
		merged.set(k, v, st.source[k])
	}
	for k, v := range svc.Settings {
		merged.set(canonicalKey(k), v, "in the service "+st.quoteService(name))
	}
	for k, v := range own {
		merged.set(k, v, "in OPENWATCH_DATABASE_DSN")
	}
	return merged, nil
}

func (st *settings) set(k, v, source string) {
	st.values[k] = v
	st.source[k] = source
}

func (st *settings) quoteService(name string) string {
	if st.serviceFromString {
		return "named in OPENWATCH_DATABASE_DSN"
	}
	return strconv.Quote(name)
}

func (st *settings) quoteFile() string {
	if st.serviceFromString {
		return "named for it"
	}
	return st.serviceFile
}

func fileProblem(err error, otherwise string) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "it does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	return otherwise
}

// pgxProblems translates pgx's ParseConfig messages. Its messages quote the
// connection string (redacted only on a best-effort basis) and sometimes
// values, so none of its text is passed on.
var pgxProblems = []struct{ prefix, key, problem string }{
	{"invalid sslcertmode", "sslcertmode", "must be disable, allow or require"},
	{"invalid connect_timeout", "connect_timeout", "must be a whole number of seconds"},
	{"invalid port", "port", "must be a number from 1 to 65535"},
	{"could not match", "port", "lists a different number of ports than there are hosts"},
	{"unknown target_session_attrs", "target_session_attrs", "must be any, read-write, read-only, primary, standby or prefer-standby"},
	{"invalid min_protocol_version", "min_protocol_version", "must be 3.0, 3.2 or latest"},
	{"invalid max_protocol_version", "max_protocol_version", "must be 3.0, 3.2 or latest"},
	{"min_protocol_version cannot be greater", "min_protocol_version", "is greater than max_protocol_version"},
	{"unknown channel_binding", "channel_binding", "must be disable, prefer or require"},
	{"invalid require_auth", "require_auth", "is not a valid list of authentication methods"},
	{"cannot parse statement_cache_capacity", "statement_cache_capacity", "must be a whole number"},
	{"cannot parse description_cache_capacity", "description_cache_capacity", "must be a whole number"},
	{"invalid default_query_exec_mode", "default_query_exec_mode", "is not one of pgx's query exec modes"},
	{"failed to read service", "service", "names a service that is not defined in the service file"},
}

// tlsProblems translate the cause inside pgx's "failed to configure TLS".
var tlsProblems = []struct{ prefix, key, problem string }{
	{"sslmode is invalid", "sslmode", "must be disable, allow, prefer, require, verify-ca or verify-full"},
	{`both "sslcert" and "sslkey"`, "sslcert", "and sslkey must be set together"},
	{"unable to read CA file", "sslrootcert", "names a file that cannot be read"},
	{"unable to add CA", "sslrootcert", "names a file that holds no PEM certificate"},
	{"unable to load system certificate pool", "sslrootcert", "is system, but the system's CA certificates cannot be loaded"},
	{"unable to read sslkey", "sslkey", "names a file that cannot be read"},
	{"failed to decode sslkey", "sslkey", "names a file that holds no PEM key"},
	{"unable to find sslpassword", "sslpassword", "is needed: the key in sslkey is encrypted"},
	{"unable to decrypt key", "sslpassword", "does not decrypt the key in sslkey"},
	{"unable to read cert", "sslcert", "names a file that cannot be read"},
	{"unable to load cert", "sslcert", "names a certificate that does not match the key in sslkey, or is not PEM"},
}

// describe turns a pgx ParseConfig error into a message in our words.
func (st *settings) describe(err error) error {
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		return errors.New("invalid database connection settings: the PostgreSQL driver refused them (its message is withheld because it may quote the password)")
	}
	blank := *pce
	blank.ConnString = ""
	msg := strings.TrimPrefix(blank.Error(), "cannot parse ``: ")
	table := pgxProblems
	if strings.HasPrefix(msg, "failed to configure TLS") {
		table, msg = tlsProblems, ""
		if inner := errors.Unwrap(pce); inner != nil {
			msg = inner.Error()
		}
	}
	for _, p := range table {
		if strings.HasPrefix(msg, p.prefix) {
			problem := p.problem
			if strings.HasSuffix(problem, "cannot be read") {
				problem += " (" + fileProblem(err, "see its permissions") + ")"
			}
			where := st.source[p.key]
			if where == "" {
				where = "by default"
			}
			return fmt.Errorf("invalid database connection settings: %s (%s) %s", p.key, where, problem)
		}
	}
	return errors.New("invalid database connection settings: the PostgreSQL driver refused them (its message is withheld because it may quote the password)")
}

// WithDatabase returns a copy of d that connects to database db instead,
// with every other setting unchanged (a clone restore point is exported
// through it).
func (d *DSN) WithDatabase(db string) *DSN {
	c := *d
	c.Config = d.Config.Copy()
	c.Config.Database = db
	c.params = make(map[string]string, len(d.params))
	for k, v := range d.params {
		c.params[k] = v
	}
	if _, ok := c.params["dbname"]; ok {
		c.params["dbname"] = db
	}
	return &c
}
