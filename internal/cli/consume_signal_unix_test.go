//go:build unix

package cli

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// consume exits on SIGINT (status 130) even while its output is not read:
// an outside test found it hung for ever once the pipe it wrote to was
// full, since the handler sat in the write and the signal waited for it.
func TestConsumeExitsOnSIGINTWhileItsOutputIsNotRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var lines strings.Builder
	pad := strings.Repeat("x", 2000)
	for i := range 200 { // far more than a pipe holds
		fmt.Fprintf(&lines, `{"type":"Placed","data":{"i":%d,"pad":%q}}`+"\n", i, pad)
	}
	if code, _, errOut := run(t, dir, lines.String(), "append", "orders-1"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, dir, "", "groups", "create", "g"); code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(rewindBinary(t), "consume", "g", "--data-dir", dir, "--json")
	cmd.Stdout = w
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// Nobody reads r: the pipe fills and consume's write blocks.
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		if code := cmd.ProcessState.ExitCode(); code != 130 {
			t.Fatalf("consume exited %d after SIGINT, want 130\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("consume did not exit within 20s of SIGINT while its output was not read\n%s", stderr.String())
	}
}
