// Package templates embeds the templates gen renders: maintainer scripts
// shared by both package formats (maint/), the helpers installed under the
// package's lib dir (helper/), systemd units (systemd/), upgrade.conf
// (config/), nfpm.yaml (nfpm/), lintian overrides and rpmlint filters
// (lintian/), the Debian copyright file (doc/), the binary's defaults
// (go/), and the package managers' gate (gate/) with its apt hook (apt/) and
// dnf plugin (dnf/).
package templates

import "embed"

// FS holds every template, by path relative to this directory.
//
//go:embed */*.tmpl
var FS embed.FS
