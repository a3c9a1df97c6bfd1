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
				reload, isActive, check, preflight, isActive, stopApp, migrate, startApp,
				reload, tryRestartRPM,
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
				unmaskDeb, wasEnabled, enableDeb, reload, invokeRestart,
				isActive, check, preflight, isActive, stopApp, migrate, startApp,
			},
		},
		{
			// dpkg passes the version last configured: the package is in
			// config-files state. The timer must come back enabled and
			// unmasked (debhelper 13.10 and later never mask on remove, and
			// the postinst unmasks what older releases masked).
			name: "dpkg -r, then dpkg -i: prerm remove, postrm remove, preinst install old, postinst configure old",
			env:  []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"},
			steps: []step{
				{"deb/prerm", []string{"remove"}},
				{"deb/postrm", []string{"remove"}},
				{"deb/preinst", []string{"install", "1.0.0-1"}},
				{"deb/postinst", []string{"configure", "1.0.0-1"}},
			},
			want: []string{
				invokeStop, reload,
				groupOK, userOK,
				unmaskDeb, wasEnabled, enableDeb, reload, invokeRestart,
				isActive, check, preflight, isActive, stopApp, migrate, startApp,
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
