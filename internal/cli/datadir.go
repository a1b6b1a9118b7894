package cli

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// openExisting opens the store of a read-only command (read, tail, stat,
// streams): a client of --server, or the embedded store in --data-dir,
// which must already hold a store. A mistyped --data-dir is then an error
// naming the path, never a new empty store.
func (a *app) openExisting(ctx context.Context) (eventStore, error) {
	if a.server == "" && a.storeURL == "" {
		if err := a.checkDataDir(); err != nil {
			return nil, err
		}
	}
	return a.openStore(ctx)
}

// checkDataDir fails with a not-found error unless --data-dir holds a
// store: a directory with a LOCK file or segment files (docs/format.md;
// every open of a store leaves its LOCK file).
func (a *app) checkDataDir() error {
	dir := a.dataDir
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return notFound("no store in %s: the directory does not exist; give the store's directory with --data-dir "+
			"(or REWIND_DATA_DIR), or a server with --server", dir)
	case err != nil:
		return err
	case !st.IsDir():
		return notFound("no store in %s: it is not a directory; give the store's directory with --data-dir", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "LOCK")); err == nil {
		return nil
	}
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return notFound("no store in %s: the directory holds no rewind store (no LOCK or segment files); give the "+
			"store's directory with --data-dir (or REWIND_DATA_DIR)", dir)
	}
	return nil
}
