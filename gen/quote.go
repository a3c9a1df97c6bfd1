package gen

import (
	"encoding/json"
	"fmt"
	"strings"
)

// shQuote makes s one POSIX-shell word that expands to exactly s: single
// quotes, with each embedded ' written as '\”. It is the only way a spec
// value reaches a shell script.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// unitWord writes s as one word of a systemd unit file (an ExecStart=
// argument, a ReadWritePaths= entry). Those settings disagree on quoting and
// on '$', so only values that need no quoting at all are accepted.
func unitWord(s string) (string, error) {
	if s == "" || strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+:@-") != "" {
		return "", fmt.Errorf("%q cannot be written into a unit file unquoted: use only [A-Za-z0-9/._+:@-]", s)
	}
	return s, nil
}

// unitText writes free text (Description=) into a unit file: '%' is doubled
// so systemd expands no specifier. Validation already rejected newlines.
func unitText(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// envQuote writes s as a value in a systemd EnvironmentFile= file (and in
// upgrade.conf): single quotes, which keep everything literal; an embedded '
// is closed, written double-quoted, and reopened.
func envQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// yamlQuote writes s as a YAML double-quoted scalar (JSON strings are).
func yamlQuote(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err) // a string always encodes
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// aptQuote writes s as an apt.conf string: apt's configuration parser knows
// no escapes, so a value holding '"' cannot be written.
func aptQuote(s string) (string, error) {
	if strings.ContainsAny(s, "\"\n") {
		return "", fmt.Errorf("%q cannot be written into an apt.conf string", s)
	}
	return `"` + s + `"`, nil
}

// pyQuote writes s as a Python string literal (a JSON string is one).
func pyQuote(s string) string { return yamlQuote(s) }
