package throttle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File is a flag-file signal, as gh-ost's: while the file Path exists the
// run waits; while Critical exists the run pauses. Either may be empty.
// A file that cannot be checked (a directory without permission, or one
// that does not exist) cannot be read: the run pauses.
type File struct {
	Path, Critical string
}

// Name is "file".
func (f *File) Name() string { return "file" }

// Read checks the files.
func (f *File) Read(context.Context) (Reading, error) {
	exists := func(p string) (bool, error) {
		if p == "" {
			return false, nil
		}
		_, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			// Absent, if its directory is there: a flag file in a
			// directory that does not exist (a typo) could never be
			// created, and would silently never throttle.
			if _, derr := os.Stat(filepath.Dir(p)); derr != nil {
				return false, fmt.Errorf("the directory of flag file %s cannot be checked: %w", p, derr)
			}
			return false, nil
		}
		return err == nil, err
	}
	if ok, err := exists(f.Critical); err != nil {
		return Reading{}, err
	} else if ok {
		return Reading{Util: 1, Critical: true, Reason: fmt.Sprintf("critical flag file %s exists (remove it, then resume the run)", f.Critical)}, nil
	}
	if ok, err := exists(f.Path); err != nil {
		return Reading{}, err
	} else if ok {
		return Reading{Util: 1, Reason: fmt.Sprintf("flag file %s exists (remove it to go on)", f.Path)}, nil
	}
	return Reading{}, nil
}
