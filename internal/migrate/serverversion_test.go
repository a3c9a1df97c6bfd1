package migrate

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/openwatch/openwatch/internal/pgtest"
)

func TestCheckServerVersionRefusesBelowTheOldestSupportedMajor(t *testing.T) {
	for _, c := range []struct {
		num     int
		text    string
		refused bool
		warning bool
	}{
		{90624, "9.6.24", true, false},
		{120017, "12.17", true, false},
		{129999, "12.99", true, false},
		{130000, "13.0", false, false},
		{150010, "15.10", false, false},
		{180001, "18.1", false, false},
		{190000, "19devel", false, true},
	} {
		warning, err := CheckServerVersion(c.num, c.text)
		var old *TooOldError
		if refused := errors.As(err, &old); refused != c.refused {
			t.Errorf("CheckServerVersion(%d) = %v, want refused %v", c.num, err, c.refused)
			continue
		}
		if c.refused && (!strings.Contains(err.Error(), "PostgreSQL "+c.text) || !strings.Contains(err.Error(), "supports PostgreSQL 13 to 18")) {
			t.Errorf("the refusal of %d does not name the version found and the supported range: %v", c.num, err)
		}
		if (warning != "") != c.warning || c.warning && !strings.Contains(warning, c.text) {
			t.Errorf("CheckServerVersion(%d) warning %q, want one: %v", c.num, warning, c.warning)
		}
	}
}

// The version the check is given is the one the real server reports, and
// every major the matrix runs passes it.
func TestTheServersReportedVersionPassesTheFloor(t *testing.T) {
	s := pgtest.Shared(t)
	conn := s.NewDatabase(t).Conn(t)
	num, text, err := ServerVersion(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if num != s.VersionNum || !strings.HasPrefix(text, strconv.Itoa(num/10000)+".") || num/10000 < OldestMajor {
		t.Fatalf("ServerVersion = %d, %q; the server says %d", num, text, s.VersionNum)
	}
	if warning, err := CheckServerVersion(num, text); err != nil || warning != "" {
		t.Fatalf("PostgreSQL %s: CheckServerVersion = %q, %v; want it supported", text, warning, err)
	}
}
