package envfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseFollowsSystemdEnvironmentFileRules(t *testing.T) {
	hostile := `p a$s'w"o\r:d@/?#%`
	tests := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"a plain assignment is read", "A=b\n", map[string]string{"A": "b"}},
		{"whitespace around the key and after = is dropped", "  A  =   b c  \n", map[string]string{"A": "b c"}},
		{"hash and semicolon lines are comments", "# A=1\n; B=2\nC=3", map[string]string{"C": "3"}},
		{"a hash inside a value is not a comment", "A=b#c\n", map[string]string{"A": "b#c"}},
		{"single quotes keep everything literally", `A='x $y \z "q"'`, map[string]string{"A": `x $y \z "q"`}},
		{"double quotes unescape only shell specials", `A="a\"b\\c\$d\` + "`" + `e\nf"`, map[string]string{"A": "a\"b\\c$d`e\\nf"}},
		{"an unquoted backslash escapes the next character", `A=a\ b\\c`, map[string]string{"A": `a b\c`}},
		{"a backslash newline continues an unquoted value", "A=ab\\\ncd\n", map[string]string{"A": "abcd"}},
		{"a backslash newline continues a double-quoted value", "A=\"ab\\\ncd\"\n", map[string]string{"A": "abcd"}},
		{"quoted and unquoted parts concatenate", `A='a b'"c d"e`, map[string]string{"A": "a bc de"}},
		{"a dollar sign is never expanded", "A=$HOME\n", map[string]string{"A": "$HOME"}},
		{"the last assignment of a key wins", "A=1\nA=2\n", map[string]string{"A": "2"}},
		{"an empty value is kept", "A=\nB=''\n", map[string]string{"A": "", "B": ""}},
		{"CRLF line endings work", "A=1\r\nB=2\r\n", map[string]string{"A": "1", "B": "2"}},
		{"a missing final newline is fine", "A=1", map[string]string{"A": "1"}},
		{"an unterminated quote yields no value, and nothing after it", "Z=0\nA='abc\nB=1", map[string]string{"Z": "0"}},
		{"an unterminated double quote yields no value", "A=\"abc\nB=1", map[string]string{}},
		{"a quoted value may span lines", "A='a\nb'\nB=\"c\nd\"\n", map[string]string{"A": "a\nb", "B": "c\nd"}},
		{"a line without = is ignored", "JUSTTEXT\nA=1\n", map[string]string{"A": "1"}},
		{"export prefixes are not shell syntax and are ignored", "export A=1\nB=2\n", map[string]string{"B": "2"}},
		{"a key starting with a digit is ignored", "1A=1\n", map[string]string{}},
		{"a backslash ending a comment does not continue it (systemd 254 and later)", "# a \\\nA=1\nB=2\n", map[string]string{"A": "1", "B": "2"}},
		{"a hostile password survives single quotes", "OPENWATCH_DATABASE_DSN='password=" + `p a$s'"'"'w"o\r:d@/?#%` + "'\n",
			map[string]string{"OPENWATCH_DATABASE_DSN": "password=" + `p a$s'w"o\r:d@/?#%`}},
		{"a hostile password survives double quotes", `K="` + `p a\$s'w\"o\\r:d@/?#%` + `"`, map[string]string{"K": hostile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := Parse(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseReportsIgnoredAssignmentsWithoutTheirValues(t *testing.T) {
	_, ignored := Parse("export SECRET=hunter2\nA=1\n")
	if len(ignored) != 1 || ignored[0].Key != "export SECRET" || ignored[0].Line != 1 {
		t.Fatalf("ignored = %+v, want one entry for line 1 key %q", ignored, "export SECRET")
	}
}

func TestParseReportsAnUnterminatedQuoteWithoutItsValue(t *testing.T) {
	for _, in := range []string{
		"A=1\nB='x\ny'\nSECRET = 'hunter2\nC=3\n",
		"A=1\nB='x\ny'\nSECRET=\"hunter2\nC=3\n",
		"A=1\nB='x\ny'\nSECRET=\"hunter2\\",
	} {
		vars, ignored := Parse(in)
		if _, ok := vars["SECRET"]; ok {
			t.Errorf("Parse(%q) kept the unterminated value", in)
		}
		if len(ignored) != 1 || ignored[0].Key != "SECRET" || ignored[0].Line != 4 ||
			!strings.Contains(ignored[0].Reason, "never closed") {
			t.Errorf("Parse(%q): ignored = %+v, want SECRET on line 4, quote never closed", in, ignored)
		}
		for _, ig := range ignored {
			if strings.Contains(fmt.Sprint(ig), "hunter2") {
				t.Errorf("Ignored holds the value: %+v", ig)
			}
		}
	}
}

func TestIgnoredLinesAreTheLinesAnEditorShows(t *testing.T) {
	for _, in := range []string{
		"A='1\n2'\nexport B=3\n",       // a quoted newline is a line
		"A=1\r\nC=2\r\nexport B=3\r\n", // CRLF is one line, not two
		"A=1\\\nx\nexport B=3\n",       // so is a continued line
	} {
		_, ignored := Parse(in)
		if len(ignored) != 1 || ignored[0].Line != 3 {
			t.Errorf("Parse(%q): ignored = %+v, want line 3", in, ignored)
		}
	}
}

func TestReadReportsAMissingFileAsNotExist(t *testing.T) {
	_, _, err := Read(filepath.Join(t.TempDir(), "absent.env"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestReadParsesAFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.env")
	if err := os.WriteFile(p, []byte("A='1 2'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _, err := Read(p)
	if err != nil || got["A"] != "1 2" {
		t.Fatalf("Read = %q, %v", got, err)
	}
}
