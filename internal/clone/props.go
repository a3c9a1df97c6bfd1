package clone

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Properties are a database's properties that belong to the database entry
// rather than to its contents: neither CREATE DATABASE … TEMPLATE nor a
// rename carries them.
type Properties struct {
	Owner           string        `json:"owner"`
	ConnectionLimit int           `json:"connection_limit"`
	Comment         *string       `json:"comment"`       // COMMENT ON DATABASE; nil when none
	Settings        []string      `json:"settings"`      // ALTER DATABASE … SET, as "name=value"
	RoleSettings    []RoleSetting `json:"role_settings"` // ALTER ROLE … IN DATABASE … SET
	ACL             []ACLItem     `json:"acl"`           // the effective ACL, defaults spelt out
}

// RoleSetting is one role's settings in the database.
type RoleSetting struct {
	Role     string   `json:"role"`
	Settings []string `json:"settings"`
}

// ACLItem is one privilege of the database's ACL.
type ACLItem struct {
	Grantee   string `json:"grantee"` // "" is PUBLIC
	Grantor   string `json:"grantor"`
	Privilege string `json:"privilege"` // CREATE, TEMPORARY, CONNECT
	Grantable bool   `json:"grantable"`
}

// readProperties reads database db's properties from the shared catalogs;
// any database's session can.
func readProperties(ctx context.Context, q querier, db string) (Properties, error) {
	var p Properties
	var oid uint32
	err := q.QueryRow(ctx, `select oid, pg_get_userbyid(datdba), datconnlimit, shobj_description(oid, 'pg_database')
		from pg_database where datname = $1`, db).Scan(&oid, &p.Owner, &p.ConnectionLimit, &p.Comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("there is no database %q on this server", db)
	}
	if err != nil {
		return p, fmt.Errorf("read database %q's properties: %w", db, err)
	}
	rows, err := q.Query(ctx, `select coalesce(pg_get_userbyid(nullif(setrole, 0)), ''), setconfig
		from pg_db_role_setting where setdatabase = $1`, oid)
	if err != nil {
		return p, fmt.Errorf("read database %q's settings: %w", db, err)
	}
	for rows.Next() {
		var role string
		var cfg []string
		if err := rows.Scan(&role, &cfg); err != nil {
			return p, fmt.Errorf("read database %q's settings: %w", db, err)
		}
		sort.Strings(cfg)
		if role == "" {
			p.Settings = cfg
		} else if len(cfg) > 0 {
			p.RoleSettings = append(p.RoleSettings, RoleSetting{Role: role, Settings: cfg})
		}
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("read database %q's settings: %w", db, err)
	}
	sort.Slice(p.RoleSettings, func(i, j int) bool { return p.RoleSettings[i].Role < p.RoleSettings[j].Role })
	rows, err = q.Query(ctx, `select coalesce(pg_get_userbyid(nullif(a.grantee, 0)), ''), pg_get_userbyid(a.grantor), a.privilege_type, a.is_grantable
		from pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
		where d.oid = $1`, oid)
	if err != nil {
		return p, fmt.Errorf("read database %q's privileges: %w", db, err)
	}
	for rows.Next() {
		var a ACLItem
		if err := rows.Scan(&a.Grantee, &a.Grantor, &a.Privilege, &a.Grantable); err != nil {
			return p, fmt.Errorf("read database %q's privileges: %w", db, err)
		}
		p.ACL = append(p.ACL, a)
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("read database %q's privileges: %w", db, err)
	}
	sort.Slice(p.ACL, func(i, j int) bool {
		a, b := p.ACL[i], p.ACL[j]
		return fmt.Sprint(a.Grantee, "\x00", a.Privilege, "\x00", a.Grantor) < fmt.Sprint(b.Grantee, "\x00", b.Privilege, "\x00", b.Grantor)
	})
	return p, nil
}

// statements are the SQL that gives database target the properties p. With
// reset, settings target has of its own are removed first (a swapped-in
// clone); cur is target's current properties.
func statements(target string, p, cur Properties, reset bool) []string {
	db := ident(target)
	var s []string
	if reset {
		if len(cur.Settings) > 0 {
			s = append(s, fmt.Sprintf("ALTER DATABASE %s RESET ALL", db))
		}
		for _, rs := range cur.RoleSettings {
			s = append(s, fmt.Sprintf("ALTER ROLE %s IN DATABASE %s RESET ALL", ident(rs.Role), db))
		}
	}
	if cur.Owner != p.Owner {
		s = append(s, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", db, ident(p.Owner)))
	}
	s = append(s, fmt.Sprintf("ALTER DATABASE %s CONNECTION LIMIT %d", db, p.ConnectionLimit))
	for _, kv := range p.Settings {
		s = append(s, fmt.Sprintf("ALTER DATABASE %s SET %s", db, setClause(kv)))
	}
	for _, rs := range p.RoleSettings {
		for _, kv := range rs.Settings {
			s = append(s, fmt.Sprintf("ALTER ROLE %s IN DATABASE %s SET %s", ident(rs.Role), db, setClause(kv)))
		}
	}
	// The ACL: take every privilege away, then grant the recorded ones.
	grantees := map[string]bool{}
	for _, a := range cur.ACL {
		grantees[a.Grantee] = true
	}
	for _, g := range sortedKeys(grantees) {
		s = append(s, fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM %s CASCADE", db, roleSpec(g)))
	}
	for _, a := range p.ACL {
		g := fmt.Sprintf("GRANT %s ON DATABASE %s TO %s", a.Privilege, db, roleSpec(a.Grantee))
		if a.Grantable {
			g += " WITH GRANT OPTION"
		}
		s = append(s, g)
	}
	if p.Comment == nil {
		s = append(s, fmt.Sprintf("COMMENT ON DATABASE %s IS NULL", db))
	} else {
		s = append(s, fmt.Sprintf("COMMENT ON DATABASE %s IS %s", db, literal(*p.Comment)))
	}
	return s
}

// apply gives target the properties p inside tx and checks the result
// exactly: a property this role cannot reproduce (a setting only a
// superuser may make, another role's grant) fails here.
func apply(ctx context.Context, tx pgx.Tx, target string, p Properties, reset bool) error {
	cur, err := readProperties(ctx, tx, target)
	if err != nil {
		return err
	}
	for _, stmt := range statements(target, p, cur, reset) {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", redactComment(stmt), err)
		}
	}
	got, err := readProperties(ctx, tx, target)
	if err != nil {
		return err
	}
	if diff := differences(p, got); diff != "" {
		return fmt.Errorf("database %q's properties cannot be reproduced exactly by role-level commands: %s", target, diff)
	}
	return nil
}

// redactComment shortens a COMMENT statement for messages.
func redactComment(stmt string) string {
	if strings.HasPrefix(stmt, "COMMENT ON DATABASE") {
		if i := strings.Index(stmt, " IS "); i > 0 {
			return stmt[:i] + " IS …"
		}
	}
	return stmt
}

// differences names what differs between want and got, "" when nothing.
func differences(want, got Properties) string {
	var d []string
	if want.Owner != got.Owner {
		d = append(d, fmt.Sprintf("owner %q, not %q", got.Owner, want.Owner))
	}
	if want.ConnectionLimit != got.ConnectionLimit {
		d = append(d, fmt.Sprintf("connection limit %d, not %d", got.ConnectionLimit, want.ConnectionLimit))
	}
	if deref(want.Comment) != deref(got.Comment) || (want.Comment == nil) != (got.Comment == nil) {
		d = append(d, "the comment differs")
	}
	if !reflect.DeepEqual(nonNil(want.Settings), nonNil(got.Settings)) {
		d = append(d, fmt.Sprintf("settings %q, not %q", got.Settings, want.Settings))
	}
	if !reflect.DeepEqual(want.RoleSettings, got.RoleSettings) && !(len(want.RoleSettings) == 0 && len(got.RoleSettings) == 0) {
		d = append(d, fmt.Sprintf("per-role settings %v, not %v", got.RoleSettings, want.RoleSettings))
	}
	if !reflect.DeepEqual(want.ACL, got.ACL) {
		d = append(d, fmt.Sprintf("privileges %v, not %v", got.ACL, want.ACL))
	}
	return strings.Join(d, "; ")
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func roleSpec(grantee string) string {
	if grantee == "" {
		return "PUBLIC"
	}
	return ident(grantee)
}

// listQuoteSettings are the settings whose stored value is a list of
// separately quoted elements (pg_dump's variable_is_guc_list_quote).
var listQuoteSettings = map[string]bool{
	"local_preload_libraries": true, "search_path": true, "session_preload_libraries": true,
	"shared_preload_libraries": true, "temp_tablespaces": true, "unix_socket_directories": true,
}

// setClause turns a stored "name=value" back into "name = 'value'", the way
// pg_dump does: list settings element by element.
func setClause(kv string) string {
	name, value, _ := strings.Cut(kv, "=")
	if !listQuoteSettings[strings.ToLower(name)] {
		return ident(name) + " = " + literal(value)
	}
	elems := splitGUCList(value)
	quoted := make([]string, len(elems))
	for i, e := range elems {
		quoted[i] = literal(e)
	}
	if len(quoted) == 0 {
		return ident(name) + " = ''"
	}
	return ident(name) + " = " + strings.Join(quoted, ", ")
}

// splitGUCList splits a list setting's value into its elements: separated by
// commas, each either bare or in double quotes with "" for a quote.
func splitGUCList(s string) []string {
	var out []string
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	skip()
	if i == len(s) {
		return nil
	}
	for {
		var b strings.Builder
		if i < len(s) && s[i] == '"' {
			i++
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
		} else {
			for i < len(s) && s[i] != ',' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
				b.WriteByte(s[i])
				i++
			}
		}
		out = append(out, b.String())
		skip()
		if i < len(s) && s[i] == ',' {
			i++
			skip()
			continue
		}
		return out
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
