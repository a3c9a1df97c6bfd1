package envfile

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"", "A=b\n", "  A  =   b c  \n", "# A=1\n; B=2\nC=3", `A='x $y \z "q"'`,
		`A="a\"b\\c\$d\` + "`" + `e\nf"`, `A=a\ b\\c`, "A=ab\\\ncd\n", "A=\"ab\\\ncd\"\n",
		"A='abc\nB=1", "A=\"abc", "A=\"abc\\", "export A=1\n", "1A=1\n", "# a \\\nA=1\n",
		"A=1\r\nB=2\r\n", "A=\xff\n", "=x\n", "A\n=1", "A='\n'\nB=\"\n\"\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		vars, ignored := Parse(in)
		lines := strings.Count(in, "\n") + 1
		for k, v := range vars {
			if !validName(k) {
				t.Errorf("kept invalid name %q", k)
			}
			if !utf8.ValidString(v) {
				t.Errorf("kept invalid UTF-8 in %s", k)
			}
		}
		for _, ig := range ignored {
			if ig.Line < 1 || ig.Line > lines {
				t.Errorf("ignored %+v: line outside 1..%d", ig, lines)
			}
			if ig.Reason == "" {
				t.Errorf("ignored %+v without a reason", ig)
			}
		}
	})
}
