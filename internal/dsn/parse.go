package dsn

import (
	"errors"
	"fmt"
	"strings"
)

// This file reads a connection string into its settings with the grammar of
// pgx v5.12's parseURLSettings and parseKeywordValueSettings (themselves
// libpq's conninfo_uri_parse and conninfo_parse), so the settings seen here
// are exactly the ones pgx sees. Unlike pgx and libpq, no error message
// quotes any part of the input: a malformed string can put a piece of the
// password anywhere, so messages name only well-known keywords and say what
// is wrong.

// syntaxError is a parse error in our own words; it never holds input text.
type syntaxError string

func (e syntaxError) Error() string { return string(e) }

// connStringSettings returns the settings written in s, keyed by libpq
// keyword (dbname, not database).
func connStringSettings(s string) (map[string]string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, syntaxError("it contains a NUL byte")
	}
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return urlSettings(s)
	}
	return keywordValueSettings(s)
}

const kvSpace = " \t\n\r\v\f"

// keywordValueSettings follows libpq's conninfo grammar: keyword = value
// pairs, values bare or single-quoted, a backslash takes the next character
// literally.
func keywordValueSettings(s string) (map[string]string, error) {
	settings := map[string]string{}
	prev := "" // the last keyword read, for messages
	s = strings.TrimLeft(s, kvSpace)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return nil, missingEquals(prev)
		}
		key := strings.Trim(s[:eq], kvSpace)
		if strings.ContainsAny(key, kvSpace) {
			return nil, missingEquals(prev)
		}
		if key == "" {
			return nil, syntaxError(fmt.Sprintf("a setting %s has no keyword before its =", after(prev)))
		}
		s = strings.TrimLeft(s[eq+1:], kvSpace)
		var raw string
		switch {
		case s == "":
		case s[0] != '\'':
			end := 0
			for ; end < len(s) && strings.IndexByte(kvSpace, s[end]) < 0; end++ {
				if s[end] == '\\' {
					end++
					if end == len(s) {
						break
					}
				}
			}
			raw, s = s[:end], strings.TrimLeft(s[end:], kvSpace)
		default:
			s = s[1:]
			end := 0
			for ; end < len(s) && s[end] != '\''; end++ {
				if s[end] == '\\' {
					end++
					if end == len(s) {
						break
					}
				}
			}
			if end >= len(s) {
				return nil, syntaxError(fmt.Sprintf("the quoted value of %s is never closed; a single quote inside a quoted value must be escaped with a backslash", nameOf(key)))
			}
			raw, s = s[:end], strings.TrimLeft(s[end+1:], kvSpace)
		}
		key = canonicalKey(key)
		prev = key
		val := unescapeKeywordValue(raw)
		if key == "user" && val == "" {
			continue
		}
		settings[key] = val
	}
	return settings, nil
}

func missingEquals(prev string) error {
	return syntaxError(fmt.Sprintf("a word without = follows %s; a value that contains spaces must be in single quotes", afterValue(prev)))
}

// unescapeKeywordValue drops each backslash and keeps the character after it.
func unescapeKeywordValue(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// urlSettings reads a postgres:// or postgresql:// URI the way libpq does,
// including its multi-host extension.
func urlSettings(s string) (map[string]string, error) {
	settings := map[string]string{}
	p, ok := strings.CutPrefix(s, "postgresql://")
	if !ok {
		p, _ = strings.CutPrefix(s, "postgres://")
	}
	// Like libpq, only a '/' ends the search for the user information.
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		user, password, hasPassword := strings.Cut(p[:i], ":")
		p = p[i+1:]
		if user != "" {
			v, err := uriDecode(user)
			if err != nil {
				return nil, syntaxError("the user name in the URL " + err.Error())
			}
			settings["user"] = v
		}
		if hasPassword && password != "" {
			v, err := uriDecode(password)
			if err != nil {
				return nil, syntaxError("the password in the URL " + err.Error())
			}
			settings["password"] = v
		}
	}
	var hosts, ports strings.Builder
	for {
		if strings.HasPrefix(p, "[") {
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return nil, syntaxError("an IPv6 host address in the URL is missing its closing bracket")
			}
			if end == 1 {
				return nil, syntaxError("an IPv6 host address in the URL is empty")
			}
			hosts.WriteString(p[1:end])
			p = p[end+1:]
			if p != "" && strings.IndexByte(":/?,", p[0]) < 0 {
				return nil, syntaxError("an IPv6 host address in the URL is followed by something other than a port, a path or a query")
			}
		} else {
			i := strings.IndexAny(p, ":/?,")
			if i < 0 {
				i = len(p)
			}
			hosts.WriteString(p[:i])
			p = p[i:]
		}
		if strings.HasPrefix(p, ":") {
			p = p[1:]
			i := strings.IndexAny(p, "/?,")
			if i < 0 {
				i = len(p)
			}
			ports.WriteString(p[:i])
			p = p[i:]
		}
		if !strings.HasPrefix(p, ",") {
			break
		}
		p = p[1:]
		hosts.WriteByte(',')
		ports.WriteByte(',')
	}
	if hosts.Len() > 0 {
		v, err := uriDecode(hosts.String())
		if err != nil {
			return nil, syntaxError("the host in the URL " + err.Error())
		}
		settings["host"] = v
	}
	if ports.Len() > 0 {
		v, err := uriDecode(ports.String())
		if err != nil {
			return nil, syntaxError("the port in the URL " + err.Error())
		}
		settings["port"] = v
	}
	if strings.HasPrefix(p, "/") {
		db := p[1:]
		p = ""
		if i := strings.IndexByte(db, '?'); i >= 0 {
			db, p = db[:i], db[i:]
		}
		if db != "" {
			v, err := uriDecode(db)
			if err != nil {
				return nil, syntaxError("the database name in the URL " + err.Error())
			}
			settings["dbname"] = v
		}
	}
	if strings.HasPrefix(p, "?") {
		if err := queryParams(p[1:], settings); err != nil {
			return nil, err
		}
	}
	return settings, nil
}

// queryParams reads '&'-separated key=value pairs, last one wins; ssl=true
// (JDBC's spelling) means sslmode=require unless a later sslmode follows.
func queryParams(q string, settings map[string]string) error {
	sslWasLast := false
	for n := 1; q != ""; n++ {
		pair := q
		if i := strings.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			q = ""
		}
		rawKey, rawValue, found := strings.Cut(pair, "=")
		if !found {
			return syntaxError(fmt.Sprintf("query parameter number %d in the URL has no =", n))
		}
		key, err := uriDecode(rawKey)
		if err != nil {
			return syntaxError(fmt.Sprintf("the name of query parameter number %d in the URL %s", n, err.Error()))
		}
		key = canonicalKey(key)
		if strings.IndexByte(rawValue, '=') >= 0 {
			return syntaxError(fmt.Sprintf("the value of %s in the URL contains a second =; percent-encode it", paramName(key, n)))
		}
		value, err := uriDecode(rawValue)
		if err != nil {
			return syntaxError(fmt.Sprintf("the value of %s in the URL %s", paramName(key, n), err.Error()))
		}
		switch key {
		case "ssl":
			sslWasLast = true
		case "sslmode":
			sslWasLast = false
		}
		settings[key] = value
	}
	if settings["ssl"] == "true" {
		delete(settings, "ssl")
		if sslWasLast {
			settings["sslmode"] = "require"
		}
	}
	return nil
}

// uriDecode percent-decodes like libpq's conninfo_uri_decode: %XX only, no
// %00, surrounding spaces skipped, inner spaces refused. Its errors hold no
// input text.
func uriDecode(raw string) (string, error) {
	raw = strings.TrimLeft(raw, " ")
	var b strings.Builder
	i := 0
	for ; i < len(raw) && raw[i] != ' '; i++ {
		if raw[i] != '%' {
			b.WriteByte(raw[i])
			continue
		}
		if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
			return "", errors.New("is not correctly percent-encoded (a percent sign must start a two-digit hex code)")
		}
		c := unhex(raw[i+1])<<4 | unhex(raw[i+2])
		if c == 0 {
			return "", errors.New("contains a percent-encoded NUL byte")
		}
		b.WriteByte(c)
		i += 2
	}
	if strings.TrimLeft(raw[i:], " ") != "" {
		return "", errors.New("contains a space; percent-encode spaces")
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// canonicalKey spells pgx's alias database as libpq's dbname.
func canonicalKey(k string) string {
	if k == "database" {
		return "dbname"
	}
	return k
}

// nameOf names a keyword in a message only when it is one PostgreSQL or pgx
// defines: an unknown "keyword" may be a piece of a password split at a space.
func nameOf(key string) string {
	if known(key) {
		return key
	}
	return "a setting"
}

func after(prev string) string {
	if prev == "" {
		return "at the start"
	}
	return "after " + nameOf(prev)
}

func afterValue(prev string) string {
	if prev == "" {
		return "the start of the string"
	}
	return "the value of " + nameOf(prev)
}

func paramName(key string, n int) string {
	if known(key) {
		return key
	}
	return fmt.Sprintf("query parameter number %d", n)
}
