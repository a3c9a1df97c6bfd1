// Package redact removes a secret, in every spelling a connection string or
// driver message may use, from text before it is printed.
package redact

import (
	"bytes"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Mask replaces every occurrence of a secret.
const Mask = "[redacted]"

// Redactor replaces the literal secret and its URL- and DSN-escaped forms.
// The zero value and a nil *Redactor redact nothing.
type Redactor struct {
	forms []string
}

// New returns a Redactor for the secrets; empty ones are skipped, and no
// secret at all redacts nothing.
func New(secrets ...string) *Redactor {
	seen := map[string]bool{}
	var forms []string
	for _, secret := range secrets {
		if secret != "" {
			forms = appendForms(forms, seen, secret)
		}
	}
	// Longest first, so a form containing another is replaced whole.
	sort.Slice(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	return &Redactor{forms: forms}
}

// appendForms adds every spelling of secret not seen yet.
func appendForms(forms []string, seen map[string]bool, secret string) []string {
	userinfo := url.UserPassword("u", secret).String() // "u:<escaped>"
	kv := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(secret)
	for _, f := range []string{
		secret,
		url.QueryEscape(secret),
		url.PathEscape(secret),
		strings.TrimPrefix(userinfo, "u:"),
		kv,
		strings.ReplaceAll(secret, `'`, `''`),
	} {
		if f != "" && !seen[f] {
			seen[f] = true
			forms = append(forms, f)
		}
	}
	return forms
}

// String returns s with every form of the secret masked.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	for _, f := range r.forms {
		s = strings.ReplaceAll(s, f, Mask)
	}
	return s
}

// Error returns err with a redacted message; errors.Is and errors.As still
// see the original chain. A nil err stays nil.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: r.String(err.Error()), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Writer returns a writer that redacts whole lines before passing them to w.
// Call Flush to write a final line that has no newline.
func (r *Redactor) Writer(w io.Writer) *Writer {
	return &Writer{r: r, w: w}
}

// Writer is a line-buffered redacting io.Writer, safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	r   *Redactor
	w   io.Writer
	buf []byte
}

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if i := bytes.LastIndexByte(w.buf, '\n'); i >= 0 {
		line := w.buf[:i+1]
		if _, err := io.WriteString(w.w, w.r.String(string(line))); err != nil {
			return 0, err
		}
		w.buf = append(w.buf[:0], w.buf[i+1:]...)
	}
	return len(p), nil
}

// Flush writes any buffered partial line.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return nil
	}
	_, err := io.WriteString(w.w, w.r.String(string(w.buf)))
	w.buf = w.buf[:0]
	return err
}
