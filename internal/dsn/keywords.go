package dsn

// keyword describes one connection setting that libpq (PostgreSQL 18) or pgx
// defines.
type keyword struct {
	env    string // libpq's environment variable, "" if it has none
	server bool   // a real server setting, sent in the startup packet
	libpq  bool   // libpq understands it (pg_dump, pg_restore, psql)
	pq     bool   // lib/pq (dbmate's driver) understands it in a URL
}

// keywords is libpq's list (fe-connect.c PQconninfoOptions) plus the few pgx
// adds. Anything not listed is a run-time parameter, sent to the server as a
// setting (search_path=…), as pgx does.
var keywords = map[string]keyword{
	"host":                      {env: "PGHOST", libpq: true, pq: true},
	"hostaddr":                  {env: "PGHOSTADDR", libpq: true, pq: true},
	"port":                      {env: "PGPORT", libpq: true, pq: true},
	"dbname":                    {env: "PGDATABASE", libpq: true, pq: true},
	"user":                      {env: "PGUSER", libpq: true, pq: true},
	"password":                  {env: "PGPASSWORD", libpq: true, pq: true},
	"passfile":                  {env: "PGPASSFILE", libpq: true, pq: true},
	"require_auth":              {env: "PGREQUIREAUTH", libpq: true},
	"channel_binding":           {env: "PGCHANNELBINDING", libpq: true},
	"connect_timeout":           {env: "PGCONNECT_TIMEOUT", libpq: true, pq: true},
	"client_encoding":           {env: "PGCLIENTENCODING", libpq: true, server: true},
	"options":                   {env: "PGOPTIONS", libpq: true, pq: true, server: true},
	"application_name":          {env: "PGAPPNAME", libpq: true, pq: true, server: true},
	"fallback_application_name": {libpq: true, pq: true},
	"keepalives":                {libpq: true},
	"keepalives_idle":           {libpq: true},
	"keepalives_interval":       {libpq: true},
	"keepalives_count":          {libpq: true},
	"tcp_user_timeout":          {libpq: true},
	"replication":               {libpq: true},
	"gssencmode":                {env: "PGGSSENCMODE", libpq: true},
	"sslmode":                   {env: "PGSSLMODE", libpq: true, pq: true},
	"sslnegotiation":            {env: "PGSSLNEGOTIATION", libpq: true, pq: true},
	"sslcompression":            {env: "PGSSLCOMPRESSION", libpq: true},
	"sslcert":                   {env: "PGSSLCERT", libpq: true, pq: true},
	"sslkey":                    {env: "PGSSLKEY", libpq: true, pq: true},
	"sslpassword":               {libpq: true},
	"sslcertmode":               {env: "PGSSLCERTMODE", libpq: true},
	"sslrootcert":               {env: "PGSSLROOTCERT", libpq: true, pq: true},
	"sslcrl":                    {env: "PGSSLCRL", libpq: true},
	"sslcrldir":                 {env: "PGSSLCRLDIR", libpq: true},
	"sslsni":                    {env: "PGSSLSNI", libpq: true, pq: true},
	"requirepeer":               {env: "PGREQUIREPEER", libpq: true},
	"ssl_min_protocol_version":  {env: "PGSSLMINPROTOCOLVERSION", libpq: true, pq: true},
	"ssl_max_protocol_version":  {env: "PGSSLMAXPROTOCOLVERSION", libpq: true, pq: true},
	"min_protocol_version":      {env: "PGMINPROTOCOLVERSION", libpq: true, pq: true},
	"max_protocol_version":      {env: "PGMAXPROTOCOLVERSION", libpq: true, pq: true},
	"krbsrvname":                {env: "PGKRBSRVNAME", libpq: true, pq: true},
	"gsslib":                    {env: "PGGSSLIB", libpq: true},
	"gssdelegation":             {env: "PGGSSDELEGATION", libpq: true},
	"service":                   {env: "PGSERVICE", libpq: true},
	"servicefile":               {env: "PGSERVICEFILE", libpq: true},
	"target_session_attrs":      {env: "PGTARGETSESSIONATTRS", libpq: true, pq: true},
	"load_balance_hosts":        {env: "PGLOADBALANCEHOSTS", libpq: true},
	"scram_client_key":          {libpq: true},
	"scram_server_key":          {libpq: true},
	"oauth_issuer":              {libpq: true},
	"oauth_client_id":           {libpq: true},
	"oauth_client_secret":       {libpq: true},
	"oauth_scope":               {libpq: true},
	// pgx's own.
	"krbspn":                     {pq: true},
	"ssl":                        {},
	"statement_cache_capacity":   {},
	"description_cache_capacity": {},
	"default_query_exec_mode":    {},
}

// serverEnv are libpq environment variables that become server settings.
var serverEnv = map[string]string{"PGTZ": "timezone", "PGDATESTYLE": "datestyle", "PGGEQO": "geqo"}

func known(key string) bool {
	_, ok := keywords[key]
	return ok
}
