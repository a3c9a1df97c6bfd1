// Package version holds the package version stamped into the binary at build
// time with -ldflags "-X github.com/openwatch/openwatch/internal/version.Version=…".
package version

// Version is the package version (VERSION-RELEASE) the binary was built for.
var Version = "0.0.0-dev"
