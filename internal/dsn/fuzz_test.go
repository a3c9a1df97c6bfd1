package dsn

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
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
