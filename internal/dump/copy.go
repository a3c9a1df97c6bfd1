package dump

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"

	"github.com/openwatch/openwatch/internal/dsn"
)

// CopyInto copies a snapshot of the database src names into the existing,
// empty database dst names: pg_dump (one consistent snapshot; the service
// keeps running, and src is only read) piped into pg_restore, with no file
// in between. Objects end up owned by dst's role (--no-owner);
// subscriptions are not copied (a copy must not connect to a publisher).
// On failure dst holds part of the copy: drop it.
func CopyInto(ctx context.Context, src, dst *dsn.DSN) error {
	dumpCmd, dumpErr, err := command(ctx, src, "pg_dump", "--format=custom", "--compress=0", "--no-password", "--no-subscriptions")
	if err != nil {
		return err
	}
	restoreCmd, restoreErr, err := command(ctx, dst, "pg_restore", "--no-owner", "--no-subscriptions", "--exit-on-error", "--no-password", "--dbname="+dst.Config.Database)
	if err != nil {
		return err
	}
	errDump, errRestore := runPipe(dumpCmd, restoreCmd)
	// When one fails the other usually does too (a short input, a closed
	// pipe): name both, the one that failed first is among them.
	var errs []error
	if errDump != nil {
		errs = append(errs, childError(src, "pg_dump", errDump, dumpErr))
	}
	if errRestore != nil {
		errs = append(errs, childError(dst, "pg_restore", errRestore, restoreErr))
	}
	return errors.Join(errs...)
}

// runPipe runs writer | reader through an OS pipe, both started from one
// goroutine locked to its OS thread (see command: the parent-death signal
// follows the forking thread). Each child holds its end of the pipe: a
// reader that stops early ends the writer with EPIPE, a writer that stops
// gives the reader end of file.
func runPipe(writer, reader *exec.Cmd) (errW, errR error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err, nil
	}
	writer.Stdout, reader.Stdin = pw, pr
	errR = reader.Start()
	pr.Close()
	if errR != nil {
		pw.Close()
		return nil, errR
	}
	errW = writer.Start()
	pw.Close()
	if errW == nil {
		errW = writer.Wait()
	}
	errR = reader.Wait()
	return errW, errR
}
