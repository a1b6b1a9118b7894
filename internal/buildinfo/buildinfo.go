// Package buildinfo says which build of rewind is running: its version and
// the VCS revision it was built from, as recorded by the Go toolchain.
package buildinfo

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"runtime/debug"
	"sync"
)

// Version is set at link time for releases (-ldflags "-X ...buildinfo.Version=v1.2.3").
var Version = "dev"

// Info describes the running binary.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`   // VCS commit, "unknown" when not built from a checkout
	Modified  bool   `json:"modified"`   // built from a checkout with uncommitted changes
	GoVersion string `json:"go_version"` // toolchain
}

var get = sync.OnceValue(func() Info {
	info := Info{Version: Version, Revision: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.GoVersion = bi.GoVersion
	if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
})

// Get returns the running binary's build information.
func Get() Info { return get() }

// String is "version (revision[+modified])".
func (i Info) String() string {
	rev := i.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if i.Modified {
		rev += "+modified"
	}
	return i.Version + " (" + rev + ")"
}

var identity = sync.OnceValue(func() string {
	info := Get()
	if info.Revision != "unknown" && !info.Modified {
		return info.String()
	}
	// No VCS stamp (go build -buildvcs=false, go run) or uncommitted
	// changes: the revision does not tell builds apart, the bytes do.
	sum := "unreadable"
	if exe, err := os.Executable(); err == nil {
		if f, err := os.Open(exe); err == nil {
			h := sha256.New()
			if _, err := io.Copy(h, f); err == nil {
				sum = hex.EncodeToString(h.Sum(nil))[:16]
			}
			f.Close()
		}
	}
	return info.String() + " sha256:" + sum
})

// Identity names this exact build: its version and VCS revision and, when
// those cannot tell two builds apart (no VCS stamp, or uncommitted
// changes), the SHA-256 of the executable. It reads the executable once,
// on first use.
func Identity() string { return identity() }
