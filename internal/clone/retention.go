package clone

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/openwatch/openwatch/internal/envfile"
)

// Verdict is what retention decides for one clone.
type Verdict struct {
	Point Point
	Drop  bool
	// File is the exported file that holds the clone's contents, "" when
	// there is none.
	File string
}

// Retain applies the retention of clones to points (the clones of one
// database): a clone goes once its exported file exists, and stays until
// then. A clone without a file is the only copy of the database as it was
// when it was taken, however many newer clones there are: after a failed
// migration, the retry's clone holds the migrations that run applied, and
// only the first clone holds the database from before the upgrade. file
// returns the path of the file holding a clone's contents, or "".
func Retain(points []Point, file func(Point) string) []Verdict {
	verdicts := make([]Verdict, 0, len(points))
	for _, p := range points {
		v := Verdict{Point: p, File: file(p)}
		v.Drop = v.File != ""
		verdicts = append(verdicts, v)
	}
	return verdicts
}

// TimingFile is the file, next to the upgrade journal, that keeps how long
// the last clone took: the next clone's time estimate.
const TimingFile = "clone.timing"

// Timing is how long a clone took.
type Timing struct {
	Bytes    int64         // pg_database_size of the source
	Duration time.Duration // the CREATE DATABASE
	Method   string        // CopyPlain or CopyClone: a rate holds for its own method only
}

// Estimate is the time a clone of size bytes by method should take at the
// rate of t; 0 when t says nothing about it.
func (t Timing) Estimate(size int64, method string) time.Duration {
	if t.Method != method || t.Bytes <= 0 || t.Duration <= 0 || size <= 0 {
		return 0
	}
	return time.Duration(float64(t.Duration) * float64(size) / float64(t.Bytes))
}

// ReadTiming reads the timing in path; ok is false when there is none that
// can be read.
func ReadTiming(path string) (t Timing, ok bool) {
	vars, _, err := envfile.Read(path)
	if err != nil {
		return Timing{}, false
	}
	b, err1 := strconv.ParseInt(vars["BYTES"], 10, 64)
	ms, err2 := strconv.ParseInt(vars["MILLISECONDS"], 10, 64)
	if err1 != nil || err2 != nil || b <= 0 || ms <= 0 {
		return Timing{}, false
	}
	return Timing{Bytes: b, Duration: time.Duration(ms) * time.Millisecond, Method: vars["METHOD"]}, true
}

// WriteTiming replaces the timing in path. It creates no directory: where
// the journal's directory does not exist (openwatch not installed) nothing
// is recorded.
func WriteTiming(path string, t Timing) error {
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return err
	}
	tmp := path + ".tmp"
	body := fmt.Sprintf("# written by openwatch migrate: the last clone restore point's size and time, for the next one's estimate\n"+
		"BYTES=%d\nMILLISECONDS=%d\nMETHOD=%s\n", t.Bytes, max(t.Duration.Milliseconds(), 1), t.Method)
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
