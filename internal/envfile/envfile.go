// Package envfile reads KEY=value files with the rules systemd applies to
// EnvironmentFile= (src/basic/env-file.c), so the binary sees exactly what the
// service sees. Nothing is ever run through a shell.
package envfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"
)

// Ignored describes an assignment systemd would drop. It never holds the value,
// which may be a secret.
type Ignored struct {
	Line   int // where the assignment starts
	Key    string
	Reason string
	// StricterThanSystemd: systemd would not drop this assignment (it reads
	// an unterminated quote to the end of the file), we refuse it.
	StricterThanSystemd bool
}

// Read parses the file at path. A missing file is reported with an error
// wrapping fs.ErrNotExist.
func Read(path string) (map[string]string, []Ignored, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	vars, ignored := Parse(string(b))
	return vars, ignored, nil
}

const (
	whitespace = " \t\n\r"
	newline    = "\n\r"
	comments   = "#;"
	// Inside double quotes a backslash only escapes these; elsewhere it is kept.
	shellNeedEscape = "\"\\`$"
)

type state int

const (
	preKey state = iota
	inKey
	preValue
	inValue
	valueEscape
	singleQuote
	doubleQuote
	doubleQuoteEscape
	inComment
	commentEscape
)

// parser is systemd's state machine: one byte at a time.
type parser struct {
	state    state
	key      []byte
	value    []byte
	keyTrail int // index where trailing key whitespace starts, -1 if none
	valTrail int // index where trailing value whitespace starts, -1 if none
	line     int // current line
	keyLine  int // line the current assignment started on
	vars     map[string]string
	ignored  []Ignored
}

// Parse applies systemd's EnvironmentFile= rules: leading whitespace and
// whitespace around '=' are dropped, '#' and ';' start comment lines, single
// quotes are literal, double quotes honour \" \\ \` \$ and line continuations,
// an unquoted backslash escapes the next character, a backslash before a
// newline joins lines, trailing unquoted whitespace is dropped, the last
// assignment of a key wins, and assignments with invalid names or invalid
// UTF-8 are ignored. One rule is stricter than systemd's: a quote that is
// never closed is reported as ignored instead of taking the rest of the file
// into the value (it is always a typo).
func Parse(s string) (map[string]string, []Ignored) {
	p := &parser{keyTrail: -1, valTrail: -1, line: 1, vars: map[string]string{}}
	for i := 0; i < len(s); i++ {
		p.step(s[i])
		if s[i] == '\n' {
			p.line++
		}
	}
	switch p.state {
	case singleQuote, doubleQuote, doubleQuoteEscape:
		key := p.key
		if p.keyTrail >= 0 {
			key = key[:p.keyTrail]
		}
		p.ignored = append(p.ignored, Ignored{Line: p.keyLine, Key: string(key),
			Reason: "its quote is never closed, so this line and every line after it are ignored", StricterThanSystemd: true})
	case preValue, inValue, valueEscape:
		if p.state == inValue && p.valTrail >= 0 {
			p.value = p.value[:p.valTrail]
		}
		p.push()
	}
	return p.vars, p.ignored
}

func is(set string, c byte) bool { return strings.IndexByte(set, c) >= 0 }

func (p *parser) step(c byte) {
	switch p.state {
	case preKey:
		switch {
		case is(comments, c):
			p.state = inComment
		case !is(whitespace, c):
			p.state, p.keyTrail, p.keyLine = inKey, -1, p.line
			p.key = append(p.key, c)
		}
	case inKey:
		switch {
		case is(newline, c):
			p.state, p.key = preKey, p.key[:0]
		case c == '=':
			p.state, p.valTrail = preValue, -1
		default:
			p.trackKeyWhitespace(c)
			p.key = append(p.key, c)
		}
	case preValue:
		switch {
		case is(newline, c):
			p.push()
		case c == '\'':
			p.state = singleQuote
		case c == '"':
			p.state = doubleQuote
		case c == '\\':
			p.state = valueEscape
		case !is(whitespace, c):
			p.state = inValue
			p.value = append(p.value, c)
		}
	case inValue:
		switch {
		case is(newline, c):
			if p.valTrail >= 0 {
				p.value = p.value[:p.valTrail]
			}
			p.push()
		case c == '\\':
			p.state, p.valTrail = valueEscape, -1
		default:
			p.trackValueWhitespace(c)
			p.value = append(p.value, c)
		}
	case valueEscape:
		p.state = inValue
		if !is(newline, c) {
			p.value = append(p.value, c)
		}
	case singleQuote:
		if c == '\'' {
			p.state = preValue
		} else {
			p.value = append(p.value, c)
		}
	case doubleQuote:
		switch c {
		case '"':
			p.state = preValue
		case '\\':
			p.state = doubleQuoteEscape
		default:
			p.value = append(p.value, c)
		}
	case doubleQuoteEscape:
		p.state = doubleQuote
		switch {
		case is(shellNeedEscape, c):
			p.value = append(p.value, c)
		case c != '\n':
			p.value = append(p.value, '\\', c)
		}
	case inComment:
		switch {
		case c == '\\':
			p.state = commentEscape
		case is(newline, c):
			p.state = preKey
		}
	case commentEscape:
		if is(newline, c) {
			p.state = preKey
		} else {
			p.state = inComment
		}
	}
}

func (p *parser) trackKeyWhitespace(c byte) {
	if !is(whitespace, c) {
		p.keyTrail = -1
	} else if p.keyTrail < 0 {
		p.keyTrail = len(p.key)
	}
}

func (p *parser) trackValueWhitespace(c byte) {
	if !is(whitespace, c) {
		p.valTrail = -1
	} else if p.valTrail < 0 {
		p.valTrail = len(p.value)
	}
}

// push records the finished assignment and resets for the next line.
func (p *parser) push() {
	key := p.key
	if p.keyTrail >= 0 {
		key = key[:p.keyTrail]
	}
	k, v := string(key), string(p.value)
	switch {
	case !validName(k):
		p.ignored = append(p.ignored, Ignored{Line: p.keyLine, Key: k, Reason: "not a valid variable name"})
	case !utf8.ValidString(v):
		p.ignored = append(p.ignored, Ignored{Line: p.keyLine, Key: k, Reason: "value is not valid UTF-8"})
	default:
		p.vars[k] = v
	}
	p.state, p.key, p.value, p.keyTrail, p.valTrail = preKey, p.key[:0], nil, -1, -1
}

// validName is systemd's env_name_is_valid: letters, digits and '_', not
// starting with a digit.
func validName(k string) bool {
	if k == "" || (k[0] >= '0' && k[0] <= '9') {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
