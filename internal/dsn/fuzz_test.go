package dsn

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// rare are bytes no message of Parse contains: one in an error can only have
// come from the input.
func rare(c byte) bool {
	return c < 0x20 || c >= 0x7f || strings.IndexByte("!#$%&*+<>?@[]\\^`{|}~", c) >= 0
}

// leaked returns a piece of pw (4 bytes or more, with a rare byte) that msg
// contains, or "".
func leaked(msg, pw string) string {
	if len(pw) > 64 {
		pw = pw[:64]
	}
	for i := 0; i < len(pw); i++ {
		for j := i + 4; j <= len(pw); j++ {
			sub := pw[i:j]
			if !strings.ContainsFunc(sub, func(r rune) bool { return r >= 0x80 || rare(byte(r)) }) {
				continue
			}
			if strings.Contains(msg, sub) {
				return sub
			}
		}
	}
	return ""
}

func FuzzParseNeverShowsThePassword(f *testing.F) {
	for _, seed := range []string{
		"s3cr3t", `p a$s'w"o\r:d@/?#%x`, "it's", `\`, `a\`, "a b", "%zz", "%00", "%4", "a%20b",
		frag1 + " " + frag2 + "='x", frag1 + " sslmode=" + frag2, "x' port='1", "@[", "[::1]", "a&b=c",
		"a=b", " lead", "trail ", "\x00", "\xff\xfe", "u:p@h", "/", "?", "#frag",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pw string) {
		t.Setenv("PGPASSWORD", "")
		escaped := []string{
			"host=h user=u password=" + kvQuoteForTest(pw),
			(&url.URL{Scheme: "postgres", User: url.UserPassword("u", pw), Host: "h", Path: "/db"}).String(),
			"postgres://u@h/db?password=" + percentEncode(pw),
		}
		raw := []string{
			"host=h user=u password=" + pw + " port=5432",
			"host=h user=u password='" + pw,
			"host=h user=u password='" + pw + "' sslmode=disable",
			"postgres://u:" + pw + "@h/db",
			"postgres://u@h/db?password=" + pw + "&sslmode=disable",
		}
		for i, s := range append(escaped, raw...) {
			d, err := Parse(s)
			if err != nil {
				if piece := leaked(err.Error(), pw); piece != "" {
					t.Errorf("Parse error shows %q of the password: %v", piece, err)
				}
				if i < len(escaped) && !strings.ContainsRune(pw, 0) {
					t.Errorf("Parse of a correctly escaped password failed: %v", err)
				}
				continue
			}
			if i < len(escaped) && d.Config.Password != pw {
				t.Errorf("form %d: password = %q, want %q", i, d.Config.Password, pw)
			}
		}
	})
}

// percentEncode encodes every byte but letters and digits (libpq does not
// read '+' as a space).
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Our reading of a connection string must agree with pgx's: the same strings
// are malformed, and the same settings come out of the well-formed ones.
func FuzzSyntaxAgreesWithPgx(f *testing.F) {
	for _, seed := range []string{
		"host=h user=u password='a b'", `password=a\ b`, "password='it\\'s'", "a=b c", "=x", "a='x",
		"postgres://u:p@h:5432/db?sslmode=disable", "postgres://[::1]:5/d", "postgresql://h1,h2:5/d?x=y&ssl=true",
		"postgres://u:%zz@h", "postgres://h/d?a", "postgres://h/d?a=b=c", "postgres://@[", " ", "user= x=1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours, err := connStringSettings(s)
		_, pgxErr := pgconn.ParseConfig(s)
		pgxSyntax := pgxErr != nil && strings.Contains(pgxErr.Error(), "failed to parse as")
		if (err != nil) != pgxSyntax {
			t.Fatalf("ours: %v; pgx: %v", err, pgxErr)
		}
		if err != nil || pgxErr != nil {
			return
		}
		cfg, _ := pgconn.ParseConfig(s)
		if pw, ok := ours["password"]; ok && os.Getenv("PGPASSWORD") == "" && cfg.Password != pw {
			t.Fatalf("password: ours %q, pgx %q", pw, cfg.Password)
		}
		if db, ok := ours["dbname"]; ok && cfg.Database != db {
			t.Fatalf("dbname: ours %q, pgx %q", db, cfg.Database)
		}
		if u, ok := ours["user"]; ok && cfg.User != u {
			t.Fatalf("user: ours %q, pgx %q", u, cfg.User)
		}
	})
}
