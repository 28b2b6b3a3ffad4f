package rotatefile

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

var (
	// ErrClosed is returned by appends after Close.
	ErrClosed = errors.New("rotatefile: writer is closed")
	// ErrLocked is returned by Open when another writer, in this process or
	// another, holds the stream.
	ErrLocked = errors.New("rotatefile: stream is locked by another writer")
	// ErrNewline is returned when a line contains a newline before its end:
	// it would become two records.
	ErrNewline = errors.New("rotatefile: line contains a newline")
)

// Error is a failed file system operation, with the path it concerned.
// errors.Is sees through it to the system error, so callers can test for
// syscall.ENOSPC or fs.ErrPermission, or use [IsDiskFull] and
// [IsPermission].
type Error struct {
	Op   string // "open", "write", "sync", "rename", "lock", ...
	Path string
	Err  error
}

func (e *Error) Error() string {
	inner := e.Err
	var pe *fs.PathError
	if errors.As(inner, &pe) && pe.Path == e.Path {
		inner = pe.Err // the os error repeats the path
	}
	return fmt.Sprintf("rotatefile: %s %s: %v", e.Op, e.Path, inner)
}
func (e *Error) Unwrap() error { return e.Err }

// IsDiskFull reports whether err means the file system has no room left
// (ENOSPC, EDQUOT, or EFBIG from a file size limit). Such errors are
// temporary: appends succeed again once space returns.
func IsDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}

// IsPermission reports whether err means the spool directory or file may not
// be written (permission denied, read-only file system).
func IsPermission(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)
}
