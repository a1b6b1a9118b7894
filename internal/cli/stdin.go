package cli

import (
	"io"
	"os"
)

// pendingInput reports whether r, standard input, is known to hold data
// now: a regular file that is not empty, or (where the system can tell) a
// pipe or socket with bytes waiting. A terminal, an empty file, and a pipe
// whose writer has written nothing yet report false: finding out more
// would mean reading, which waits for a writer that may never write.
func pendingInput(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		return fi.Size() > 0
	case m&os.ModeCharDevice != 0: // a terminal, /dev/null
		return false
	}
	return bytesWaiting(f)
}
