package gen

import (
	"os"
	"strings"
	"testing"
)

// A restore point is named after the package that took it: after a failed
// migration, the package that failed. The docs must not send an operator
// back to that version.
func TestTheDocsDoNotSendAnOperatorBackToTheVersionThatFailed(t *testing.T) {
	for _, f := range []string{"../README.md", "../docs/UPGRADING.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(strings.Fields(string(b)), " ")
		for _, wrong := range []string{"version named in it", "version named in the file", "package version named in"} {
			if strings.Contains(text, wrong) {
				t.Errorf("%s says to install the %q a restore point: that is the package that took it (after a failed migration, the one that failed)", f, wrong)
			}
		}
	}
	if b, _ := os.ReadFile("../docs/UPGRADING.md"); !strings.Contains(strings.Join(strings.Fields(string(b)), " "), "Go back to the version you upgraded from") {
		t.Error("UPGRADING.md does not say which version to go back to after a failed migration")
	}
}
