// Package fsync makes a rename or a new file in a directory durable.
package fsync

import "os"

// Dir fsyncs the directory dir, so that entries created, renamed or removed
// in it survive a crash.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
