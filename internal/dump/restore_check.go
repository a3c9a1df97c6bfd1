package dump

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/dsn"
)

// RefusedError means Restore compared the restore point with the server
// before changing anything and found what the restore would need but the
// server or the role lacks. Nothing was changed.
type RefusedError struct {
	File     string
	Database string // the database that was to be restored into
	Role     string // the role the restore runs as
	// Problems are complete sentences, each naming what is missing and the
	// command that provides it.
	Problems []string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the restore point %s cannot be restored into database %q as role %q; nothing was changed:\n  - %s",
		e.File, e.Database, e.Role, strings.Join(e.Problems, "\n  - "))
}

// tocEntry is one line of pg_restore --list.
type tocEntry struct {
	line   string // as listed, for the --use-list file
	desc   string // TABLE, TABLE DATA, EXTENSION, ACL, …
	schema string // "-" when none
	name   string
	owner  string // "" when none
}

// multiWordDescs are the entry types of more than one word; a longer one
// comes before its prefix.
var multiWordDescs = []string{
	"MATERIALIZED VIEW DATA", "MATERIALIZED VIEW", "TABLE DATA", "TABLE ATTACH", "SEQUENCE SET", "SEQUENCE OWNED BY",
	"DEFAULT ACL", "FK CONSTRAINT", "CHECK CONSTRAINT", "INDEX ATTACH", "FOREIGN TABLE", "FOREIGN DATA WRAPPER", "FOREIGN SERVER",
	"OPERATOR CLASS", "OPERATOR FAMILY", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER",
	"TEXT SEARCH TEMPLATE", "USER MAPPING", "EVENT TRIGGER", "PROCEDURAL LANGUAGE", "SECURITY LABEL", "SHELL TYPE",
	"LARGE OBJECT", "PUBLICATION TABLES IN SCHEMA", "PUBLICATION TABLE", "ACCESS METHOD", "ROW SECURITY",
}

var tocLine = regexp.MustCompile(`^\d+; \d+ \d+ (.*)$`)

// parseTOC reads pg_restore --list output. Names holding spaces make the
// schema/name split ambiguous; only the desc, the owner (the last field) and
// the names of schemas and extensions (no schema, "-") are relied upon.
func parseTOC(list string) []tocEntry {
	var entries []tocEntry
	for _, line := range strings.Split(list, "\n") {
		m := tocLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rest := m[1]
		e := tocEntry{line: line}
		for _, d := range multiWordDescs {
			if strings.HasPrefix(rest, d+" ") {
				e.desc = d
				break
			}
		}
		if e.desc == "" {
			e.desc, _, _ = strings.Cut(rest, " ")
		}
		fields := strings.Split(strings.TrimPrefix(rest, e.desc+" "), " ")
		if len(fields) >= 3 {
			e.schema, e.owner = fields[0], fields[len(fields)-1]
			e.name = strings.Join(fields[1:len(fields)-1], " ")
		}
		entries = append(entries, e)
	}
	return entries
}

// notOwnedDescs are entries that carry no ALTER … OWNER TO of their own.
var notOwnedDescs = map[string]bool{
	"TABLE DATA": true, "SEQUENCE SET": true, "BLOBS": true, "ACL": true, "DEFAULT ACL": true, "COMMENT": true,
	"SECURITY LABEL": true, "EXTENSION": true, "MATERIALIZED VIEW DATA": true, "ENCODING": true, "STDSTRINGS": true,
	"SEARCHPATH": true, "DATABASE PROPERTIES": true,
}

// archiveExtension is a CREATE EXTENSION the restore point holds.
type archiveExtension struct{ name, schema string }

var (
	ident        = `(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)`
	createExtRE  = regexp.MustCompile(`^CREATE EXTENSION IF NOT EXISTS (` + ident + `) WITH SCHEMA (` + ident + `);$`)
	granteesRE   = regexp.MustCompile(`^(?:GRANT|REVOKE|ALTER DEFAULT PRIVILEGES) .* (?:TO|FROM) (` + ident + `(?:, ` + ident + `)*)(?: WITH GRANT OPTION)?(?: CASCADE)?;$`)
	forRoleRE    = regexp.MustCompile(`^ALTER DEFAULT PRIVILEGES FOR ROLE (` + ident + `) `)
	sessionAuthR = regexp.MustCompile(`^SET SESSION AUTHORIZATION (` + ident + `);$`)
	identRE      = regexp.MustCompile(ident)
)

// unquote turns an SQL identifier as pg_dump writes it into the name.
func unquote(id string) string {
	if strings.HasPrefix(id, `"`) {
		return strings.ReplaceAll(id[1:len(id)-1], `""`, `"`)
	}
	return id
}

// archiveSQL holds what Restore reads from the SQL of a restore point's
// extension and privilege entries.
type archiveSQL struct {
	extensions []archiveExtension
	grantees   []string // roles named in GRANT/REVOKE/default privileges
	grantors   []string // roles whose grants pg_restore makes with SET SESSION AUTHORIZATION
}

func parseArchiveSQL(sql string) archiveSQL {
	var a archiveSQL
	for _, line := range strings.Split(sql, "\n") {
		if m := createExtRE.FindStringSubmatch(line); m != nil {
			a.extensions = append(a.extensions, archiveExtension{unquote(m[1]), unquote(m[2])})
		}
		if m := granteesRE.FindStringSubmatch(line); m != nil {
			for _, id := range identRE.FindAllString(m[1], -1) {
				if id != "PUBLIC" {
					a.grantees = append(a.grantees, unquote(id))
				}
			}
		}
		if m := forRoleRE.FindStringSubmatch(line); m != nil {
			a.grantees = append(a.grantees, unquote(m[1]))
		}
		if m := sessionAuthR.FindStringSubmatch(line); m != nil {
			a.grantors = append(a.grantors, unquote(m[1]))
		}
	}
	return a
}

// restorePlan is what the check found: the entries pg_restore is to skip and
// what the prelude keeps.
type restorePlan struct {
	list           string   // --use-list file content
	ours           []string // roles whose objects the prelude drops: the restoring role and the archive's owners
	keptSchemas    []string // existing schemas holding members of installed extensions: kept, only our objects in them go
	dropExtensions []string // installed extensions owned by ours that the archive lacks
	archiveExts    []string // extension names in the archive
}

// server is what the check reads from the database.
type server struct {
	role, database      string
	superuser, createDB bool
	roles               map[string]bool
	installed           map[string]installedExtension
	available           map[string]bool // name → trusted
	extSchemas          map[string][]string
	schemas             map[string]bool // existing schema → the role is a member of its owner
}

type installedExtension struct{ schema, owner string }

func readServer(ctx context.Context, d *dsn.DSN) (*server, error) {
	conn, err := d.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	s := &server{installed: map[string]installedExtension{}, extSchemas: map[string][]string{}}
	fail := func(what string, err error) error {
		return d.Redactor.Error(fmt.Errorf("read %s before the restore: %w", what, err))
	}
	if err := conn.QueryRow(ctx, `select current_user, current_database(),
			(select rolsuper from pg_roles where rolname = current_user),
			has_database_privilege(current_database(), 'CREATE')`).Scan(&s.role, &s.database, &s.superuser, &s.createDB); err != nil {
		return nil, fail("the role", err)
	}
	if s.roles, err = nameFlags(ctx, conn, `select rolname, true from pg_roles`); err != nil {
		return nil, fail("the roles", err)
	}
	type ext struct{ Name, Schema, Owner string }
	rows, _ := conn.Query(ctx, `select e.extname, n.nspname, pg_get_userbyid(e.extowner)
		from pg_extension e join pg_namespace n on n.oid = e.extnamespace`)
	exts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ext])
	if err != nil {
		return nil, fail("the installed extensions", err)
	}
	for _, e := range exts {
		s.installed[e.Name] = installedExtension{e.Schema, e.Owner}
		s.extSchemas[e.Name] = append(s.extSchemas[e.Name], e.Schema)
	}
	// Schemas that are themselves members of an extension.
	rows, _ = conn.Query(ctx, `select e.extname, n.nspname from pg_depend d
		join pg_extension e on d.refclassid = 'pg_extension'::regclass and d.refobjid = e.oid
		join pg_namespace n on d.classid = 'pg_namespace'::regclass and d.objid = n.oid
		where d.deptype = 'e'`)
	members, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Ext, Schema string }])
	if err != nil {
		return nil, fail("the extensions' schemas", err)
	}
	for _, m := range members {
		s.extSchemas[m.Ext] = append(s.extSchemas[m.Ext], m.Schema)
	}
	if s.schemas, err = nameFlags(ctx, conn, `select nspname, pg_has_role(nspowner, 'MEMBER') from pg_namespace
		where nspname not in ('pg_catalog', 'information_schema') and nspname not like 'pg\_toast%' and nspname not like 'pg\_temp\_%'`); err != nil {
		return nil, fail("the schemas", err)
	}
	if s.available, err = nameFlags(ctx, conn, `select a.name, coalesce((select v.trusted from pg_available_extension_versions v
		where v.name = a.name and v.version = a.default_version), false) from pg_available_extensions a`); err != nil {
		return nil, fail("the available extensions", err)
	}
	return s, nil
}

// nameFlags reads the rows of sql, a name and a boolean each, into a map.
func nameFlags(ctx context.Context, conn *pgx.Conn, sql string) (map[string]bool, error) {
	rows, _ := conn.Query(ctx, sql)
	pairs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		Name string
		Flag bool
	}])
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(pairs))
	for _, p := range pairs {
		m[p.Name] = p.Flag
	}
	return m, nil
}

// roleAccess is whether the restoring role may act as a role (ALTER … OWNER
// TO it), and whether that role is a superuser.
type roleAccess struct{ member, superuser bool }

func memberOf(ctx context.Context, d *dsn.DSN, roles []string) (map[string]roleAccess, error) {
	conn, err := d.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(ctx, `select r, pg_has_role(current_user, r, 'MEMBER'), (select rolsuper from pg_roles where rolname = r)
		from unnest($1::text[]) r`, roles)
	res, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		Role          string
		Member, Super bool
	}])
	if err != nil {
		return nil, d.Redactor.Error(fmt.Errorf("read role memberships before the restore: %w", err))
	}
	m := map[string]roleAccess{}
	for _, r := range res {
		m[r.Role] = roleAccess{r.Member, r.Super}
	}
	return m, nil
}

// checkRestore reads the restore point's table of contents and the SQL of its
// extension and privilege entries, compares them with the server, and either
// refuses (a *RefusedError) or returns the plan. It changes nothing.
func checkRestore(ctx context.Context, d *dsn.DSN, file string) (*restorePlan, error) {
	list, err := pgRestoreOutput(ctx, d, "pg_restore --list", "--list", "--", file)
	if err != nil {
		return nil, fmt.Errorf("%s is not a usable restore point: %w", file, err)
	}
	entries := parseTOC(list)
	var sub strings.Builder
	for _, e := range entries {
		if e.desc == "EXTENSION" || e.desc == "ACL" || e.desc == "DEFAULT ACL" {
			sub.WriteString(e.line + "\n")
		}
	}
	subList, err := writeTemp(sub.String())
	if err != nil {
		return nil, err
	}
	defer os.Remove(subList)
	sql, err := pgRestoreOutput(ctx, d, "pg_restore", "--use-list="+subList, "--file=-", "--", file)
	if err != nil {
		return nil, fmt.Errorf("%s is not a usable restore point: %w", file, err)
	}
	a := parseArchiveSQL(sql)
	srv, err := readServer(ctx, d)
	if err != nil {
		return nil, err
	}
	refused := &RefusedError{File: file, Database: srv.database, Role: srv.role}

	// Extensions.
	plan := &restorePlan{}
	inArchive := map[string]bool{}
	for _, x := range a.extensions {
		inArchive[x.name] = true
		plan.archiveExts = append(plan.archiveExts, x.name)
		create := fmt.Sprintf("CREATE EXTENSION IF NOT EXISTS %s WITH SCHEMA %s;", quoteIdent(x.name), quoteIdent(x.schema))
		if inst, ok := srv.installed[x.name]; ok {
			if inst.schema != x.schema {
				refused.Problems = append(refused.Problems, fmt.Sprintf("extension %s is installed in schema %s, the restore point has it in schema %s; as a superuser, run in database %s: ALTER EXTENSION %s SET SCHEMA %s;",
					x.name, inst.schema, x.schema, srv.database, quoteIdent(x.name), quoteIdent(x.schema)))
			}
			continue
		}
		trusted, available := srv.available[x.name]
		switch {
		case !available:
			refused.Problems = append(refused.Problems, fmt.Sprintf("extension %s is not available on this server; install the package that provides it (e.g. postgresql-contrib), then, as a superuser, run in database %s: %s",
				x.name, srv.database, create))
		case srv.superuser || (trusted && srv.createDB):
			// The archive's own CREATE EXTENSION will do.
		default:
			why := "it is not a trusted extension"
			if trusted {
				why = "the role lacks CREATE on the database"
			}
			refused.Problems = append(refused.Problems, fmt.Sprintf("extension %s is not installed and role %s cannot create it (%s); as a superuser, run in database %s: %s",
				x.name, srv.role, why, srv.database, create))
		}
	}

	// Schemas that exist and whose owner the role may not act as are left as
	// they are: neither dropped nor created, their owner, comment and
	// privileges untouched; only what ours own in them goes.
	foreign := map[string]bool{}
	for n, mine := range srv.schemas {
		foreign[n] = !mine
	}
	onForeignSchema := func(e tocEntry) bool {
		if e.schema != "-" {
			return false
		}
		if e.desc == "SCHEMA" {
			return foreign[e.name]
		}
		n, ok := strings.CutPrefix(e.name, "SCHEMA ")
		return ok && (e.desc == "COMMENT" || e.desc == "ACL" || e.desc == "SECURITY LABEL") && foreign[unquote(n)]
	}

	// Roles: owners of the archive's objects, grantees, grantors.
	owners := map[string]bool{}
	for _, e := range entries {
		if e.owner != "" && !notOwnedDescs[e.desc] && !onForeignSchema(e) {
			owners[e.owner] = true
		}
	}
	var missing, existingOwners []string
	for _, r := range sortedSet(owners) {
		if srv.roles[r] {
			existingOwners = append(existingOwners, r)
		} else {
			missing = append(missing, r)
		}
	}
	for _, r := range dedupe(append(a.grantees, a.grantors...)) {
		if !srv.roles[r] && !slices.Contains(missing, r) {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		var names, creates []string
		for _, r := range missing {
			names = append(names, quoteIdent(r))
			creates = append(creates, fmt.Sprintf("CREATE ROLE %s NOLOGIN;", quoteIdent(r)))
		}
		refused.Problems = append(refused.Problems, fmt.Sprintf("the restore point names roles that do not exist on this server (they own objects or are granted privileges in it): %s; as a superuser, run: %s",
			strings.Join(names, ", "), strings.Join(creates, " ")))
	}
	if len(existingOwners) > 0 {
		member, err := memberOf(ctx, d, existingOwners)
		if err != nil {
			return nil, err
		}
		for _, r := range existingOwners {
			switch {
			case member[r].member:
			case member[r].superuser:
				refused.Problems = append(refused.Problems, fmt.Sprintf("objects in the restore point are owned by the superuser %s, and role %s may not give objects to it; restore as a superuser",
					quoteIdent(r), srv.role))
			default:
				refused.Problems = append(refused.Problems, fmt.Sprintf("objects in the restore point are owned by role %s, and role %s may not give objects to it; as a superuser, run: GRANT %s TO %s;",
					quoteIdent(r), srv.role, quoteIdent(r), quoteIdent(srv.role)))
			}
		}
	}
	if len(a.grantors) > 0 && !srv.superuser {
		refused.Problems = append(refused.Problems, fmt.Sprintf("the restore point holds privileges granted by roles other than the objects' owners (%s), which only a superuser can restore; restore as a superuser",
			strings.Join(dedupe(a.grantors), ", ")))
	}
	if len(refused.Problems) > 0 {
		return nil, refused
	}

	// The plan: keep installed extensions (and their schemas) unless ours and
	// absent from the archive; keep foreign schemas.
	plan.ours = dedupe(append([]string{srv.role}, existingOwners...))
	kept := map[string]bool{}
	for name, inst := range srv.installed {
		if slices.Contains(plan.ours, inst.owner) && !inArchive[name] {
			plan.dropExtensions = append(plan.dropExtensions, name)
			continue
		}
		for _, s := range srv.extSchemas[name] {
			if s != "pg_catalog" {
				kept[s] = true
			}
		}
	}
	for n, f := range foreign {
		if f {
			kept[n] = true
		}
	}
	sort.Strings(plan.dropExtensions)
	plan.keptSchemas = sortedSet(kept)
	var l strings.Builder
	for _, e := range entries {
		skip := false
		switch {
		case e.desc == "EXTENSION" && e.schema == "-":
			_, skip = srv.installed[e.name]
		case e.desc == "COMMENT" && e.schema == "-" && strings.HasPrefix(e.name, "EXTENSION "):
			name := strings.TrimPrefix(e.name, "EXTENSION ")
			_, skip = srv.installed[name]
			if !skip && strings.HasPrefix(name, `"`) {
				_, skip = srv.installed[unquote(name)]
			}
		case onForeignSchema(e):
			skip = true
		case e.desc == "SCHEMA" && e.schema == "-":
			skip = kept[e.name] && e.name != "public"
		}
		if skip {
			l.WriteString(";") // a comment in a --use-list file
		}
		l.WriteString(e.line + "\n")
	}
	plan.list = l.String()
	return plan, nil
}

// pgRestoreOutput runs pg_restore and returns its standard output.
func pgRestoreOutput(ctx context.Context, d *dsn.DSN, label string, args ...string) (string, error) {
	cmd, stderr, err := command(ctx, d, "pg_restore", args...)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", childError(d, label, err, stderr)
	}
	return out.String(), nil
}

// writeTemp writes s to a new private file and returns its path.
func writeTemp(s string) (string, error) {
	f, err := os.CreateTemp("", "openwatch-restore-*.list")
	if err != nil {
		return "", fmt.Errorf("write the restore list: %w", err)
	}
	_, werr := f.WriteString(s)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write the restore list: %w", werr)
	}
	return f.Name(), nil
}

// quoteIdent quotes an SQL identifier where it needs it, so that commands in
// messages read as a DBA would type them.
func quoteIdent(s string) string {
	if plainIdent.MatchString(s) && !reservedWords[s] {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// reservedWords are the reserved SQL key words a role or schema name is
// likely to collide with.
var reservedWords = map[string]bool{"all": true, "analyse": true, "analyze": true, "and": true, "any": true,
	"array": true, "as": true, "case": true, "check": true, "column": true, "constraint": true, "create": true,
	"current_user": true, "default": true, "do": true, "end": true, "for": true, "from": true, "grant": true,
	"group": true, "only": true, "order": true, "primary": true, "references": true, "select": true,
	"session_user": true, "table": true, "to": true, "union": true, "user": true, "where": true, "window": true, "with": true}

// quoteLiteral quotes s for standard_conforming_strings = on.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func sqlArray(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quoteLiteral(s)
	}
	return "ARRAY[" + strings.Join(q, ", ") + "]::text[]"
}

func sortedSet(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
