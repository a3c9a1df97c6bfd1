package redact

import (
	"errors"
	"io/fs"
	"net/url"
	"strings"
	"testing"
)

const hostile = `p a$s'w"o\r:d@/?#%x`

func TestStringMasksEverySpellingOfThePassword(t *testing.T) {
	r := New(hostile)
	u := url.URL{Scheme: "postgres", User: url.UserPassword("u", hostile), Host: "h"}
	tests := []struct {
		name string
		in   string
	}{
		{"the literal password", "password authentication failed: " + hostile},
		{"a URL with the password in userinfo", u.String()},
		{"a query-escaped password", "password=" + url.QueryEscape(hostile)},
		{"a path-escaped password", url.PathEscape(hostile)},
		{"a keyword/value quoted password", `password='` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(hostile) + `'`},
		{"an SQL-quoted password", `PASSWORD '` + strings.ReplaceAll(hostile, `'`, `''`) + `'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.String(tt.in)
			if !strings.Contains(got, Mask) {
				t.Errorf("String(%q) = %q: nothing masked", tt.in, got)
			}
			for _, f := range r.forms {
				if strings.Contains(got, f) {
					t.Errorf("String(%q) = %q still holds %q", tt.in, got, f)
				}
			}
		})
	}
}

func TestAnEmptySecretRedactsNothing(t *testing.T) {
	if got := New("").String("abc"); got != "abc" {
		t.Fatalf("got %q", got)
	}
	var nilR *Redactor
	if got := nilR.String("abc"); got != "abc" {
		t.Fatalf("nil redactor changed text: %q", got)
	}
}

func TestErrorKeepsTheChainButMasksTheMessage(t *testing.T) {
	err := New("s3cret").Error(&fs.PathError{Op: "open", Path: "s3cret", Err: fs.ErrNotExist})
	if strings.Contains(err.Error(), "s3cret") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %q, is ErrNotExist = %v", err, errors.Is(err, fs.ErrNotExist))
	}
}

func TestWriterMasksASecretSplitAcrossWrites(t *testing.T) {
	var sb strings.Builder
	w := New("s3cret").Writer(&sb)
	w.Write([]byte("a s3"))
	w.Write([]byte("cret b\nc s3cr"))
	w.Write([]byte("et"))
	w.Flush()
	if got, want := sb.String(), "a "+Mask+" b\nc "+Mask; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestNewMasksEverySecretGiven(t *testing.T) {
	r := New("", "first-secret", "second-secret")
	got := r.String("a first-secret and a second-secret")
	if strings.Contains(got, "secret") {
		t.Errorf("String = %q, want both secrets masked", got)
	}
	if got := New().String("nothing to mask"); got != "nothing to mask" {
		t.Errorf("New() masks %q", got)
	}
}
