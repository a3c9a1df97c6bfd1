package gen

import (
	"testing"
)

// TestUpgradeSequences runs the scripts in the order each package manager
// runs them on an upgrade, with the appliance running and migrations
// pending: the service must be stopped once, migrated, started, and nothing
// the old package's scripts do afterwards may stop it again.
func TestUpgradeSequences(t *testing.T) {
	type step struct {
		script string
		args   []string
	}
	sequences := []struct {
		name  string
		env   []string
		steps []step
		want  []string
	}{
		{
			name: "rpm -U: new %pre, new %post, old %preun, old %postun",
			steps: []step{
				{"rpm/pre.sh", []string{"2"}},
				{"rpm/post.sh", []string{"2"}},
				{"rpm/preun.sh", []string{"1"}},
				{"rpm/postun.sh", []string{"1"}},
			},
			want: []string{
				groupOK, userOK,
				reload, "systemctl try-restart openwatch-backup-cleanup.timer",
				isActive, check, preflight, isActive, stopApp, migrate, startApp, exportBg,
				reload, "systemctl try-restart openwatch-backup-cleanup.timer",
			},
		},
		{
			name: "dpkg -i: old prerm upgrade, new preinst upgrade, old postrm upgrade, new postinst configure",
			env:  []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"},
			steps: []step{
				{"deb/prerm", []string{"upgrade", "1.1.0-1"}},
				{"deb/preinst", []string{"upgrade", "1.0.0-1"}},
				{"deb/postrm", []string{"upgrade", "1.1.0-1"}},
				{"deb/postinst", []string{"configure", "1.0.0-1"}},
			},
			want: []string{
				groupOK, userOK,
				reload, wasEnabled, enableDeb, "deb-systemd-invoke restart openwatch-backup-cleanup.timer",
				isActive, check, preflight, isActive, stopApp, migrate, startApp, exportBg,
			},
		},
	}
	for _, seq := range sequences {
		t.Run(seq.name, func(t *testing.T) {
			for _, shell := range shells {
				t.Run(shellName(shell), func(t *testing.T) {
					sb := newSandbox(t)
					sb.systemd()
					sb.answer(check, 10)
					sb.answer(isActive, 0)
					for _, st := range seq.steps {
						if rc, out := sb.run(shell, st.script, seq.env, st.args...); rc != 0 {
							t.Fatalf("%s %v: exit %d\n%s", st.script, st.args, rc, out)
						}
					}
					if d := Diff("want", "got", lines(seq.want), lines(sb.log())); d != "" {
						t.Errorf("commands run (-want +got):\n%s", d)
					}
					journalSays("succeeded")(t, sb)
				})
			}
		})
	}
}
