//go:build unix

package template_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rewindhq/rewind/replay/template"
)

// Load reads only a regular file of at most MaxTemplateSize bytes: a FIFO
// hung the read, /dev/zero ran out of memory (an outside test).
func TestLoadRefusesWhatIsNotATemplateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("name: t\n"+strings.Repeat("# padding\n", template.MaxTemplateSize/10+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{fifo, "not a regular file"}, {dir, "not a regular file"}, {"/dev/zero", "not a regular file"},
		{big, "at most"}, {filepath.Join(dir, "missing.yaml"), "cannot be read"},
	} {
		if _, err := template.Load(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.path, err, c.want)
		}
	}
}
