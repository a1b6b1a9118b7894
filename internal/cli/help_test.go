package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rewindhq/rewind"
)

// TestREADMEExitStatuses keeps the README's exit-status table and the
// root's --help in step with exitStatuses.
func TestREADMEExitStatuses(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (\\d+) \\| ([^|]*) \\|")
	documented := map[int][]rewind.Code{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		status, _ := strconv.Atoi(m[1])
		for _, c := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(m[2], -1) {
			documented[status] = append(documented[status], rewind.Code(c[1]))
		}
	}
	var out bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &out)
	a.run(t.Context(), []string{"--help"})
	for _, s := range exitStatuses {
		if s.status == 0 {
			continue
		}
		if !slices.Equal(documented[s.status], s.codes) {
			t.Errorf("README documents status %d for %v, the CLI uses it for %v", s.status, documented[s.status], s.codes)
		}
		if !strings.Contains(out.String(), fmt.Sprintf("%d ", s.status)) {
			t.Errorf("rewind --help does not list exit status %d", s.status)
		}
		delete(documented, s.status)
	}
	delete(documented, 0)
	if len(documented) > 0 {
		t.Errorf("README documents statuses the CLI does not use: %v", documented)
	}
}

// TestHelpExplainsEveryFlag walks every command: each flag has help, a
// number's help names its unit, every command that runs takes --json, and
// no --help shows a value from the environment.
func TestHelpExplainsEveryFlag(t *testing.T) {
	t.Parallel()
	a := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	root := a.rootCmd()
	units := regexp.MustCompile(`events|bytes|rows|streams|writers|connections|records|entries|runs|position|` +
		`version|diffs|passes|subscriptions|sequence|workers|shards|0:`)
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		// cobra's help and completion print help and scripts, not reports.
		if !c.Runnable() || c.HasSubCommands() || c.Name() == "help" ||
			c.HasParent() && c.Parent().Name() == "completion" {
			return
		}
		if c.Flags().Lookup("json") == nil {
			t.Errorf("%s has no --json", c.CommandPath())
		}
		check := func(f *pflag.Flag) {
			if f.Usage == "" {
				t.Errorf("%s --%s has no help", c.CommandPath(), f.Name)
			}
			switch f.Value.Type() {
			case "int", "int64", "uint64":
				if !units.MatchString(f.Usage) {
					t.Errorf("%s --%s (%s): its help %q names no unit", c.CommandPath(), f.Name, f.Value.Type(), f.Usage)
				}
			}
		}
		c.LocalFlags().VisitAll(check)
		c.InheritedFlags().VisitAll(check)
	}
	walk(root)

	// Values from the environment never show up in --help as defaults.
	env := cleanEnv("REWIND_TOKEN=rwd_secret_from_env", "REWIND_DSN=postgres://u:pw-from-env@h/db",
		"REWIND_SERVER=http://from-env:1", "REWIND_CONFIG=/from-env.yaml")
	for _, args := range [][]string{{"--help"}, {"read", "--help"}, {"backfill", "run", "--help"}, {"serve", "--help"}} {
		code, out, errOut := exe(t, env, "", args...)
		if code != 0 || strings.Contains(out+errOut, "from-env") || strings.Contains(out+errOut, "secret_from_env") {
			t.Errorf("%v: %d, shows an environment value:\n%s%s", args, code, out, errOut)
		}
	}
}

// TestReadOnlyCommandsNeverCreateAStore runs every read-only command on a
// directory that does not exist and on one that holds no store.
func TestReadOnlyCommandsNeverCreateAStore(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"read"}, {"read", "s"}, {"tail"}, {"stat"}, {"stat", "s"}, {"streams"}, {"verify"},
		{"delete", "s"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			missing := t.TempDir() + "/typo"
			empty := t.TempDir()
			for _, dir := range []string{missing, empty} {
				code, out, errOut := exe(t, cleanEnv(), "", append([]string{"--data-dir", dir}, append(args, "--json")...)...)
				if code != 3 || !strings.Contains(errOut, dir) || !strings.Contains(errOut, "no store") {
					t.Errorf("%s: exit %d, stderr %q; want 3 naming the path", dir, code, errOut)
				}
				if c, _ := jsonError(t, out); c != "not_found" {
					t.Errorf("%s: --json code %q", dir, c)
				}
				checkMessage(t, errOut)
			}
			if _, err := os.Stat(missing); !os.IsNotExist(err) {
				t.Errorf("%v created %s", args, missing)
			}
			if entries, _ := os.ReadDir(empty); len(entries) != 0 {
				t.Errorf("%v wrote %v into a directory without a store", args, entries)
			}
		})
	}
}

// TestChoosingAServerOrADataDirectory: flags > environment > defaults, and
// an explicit --data-dir wins over REWIND_SERVER.
func TestChoosingAServerOrADataDirectory(t *testing.T) {
	t.Parallel()
	dir, other := t.TempDir(), t.TempDir()
	if code, _, errOut := exe(t, cleanEnv(), "", "--data-dir", dir, "append", "s", "--type", "A"); code != 0 {
		t.Fatal(errOut)
	}
	down := "REWIND_SERVER=http://127.0.0.1:1"
	cases := []struct {
		name   string
		env    []string
		args   []string
		status int
		want   string
	}{
		{"REWIND_DATA_DIR", cleanEnv("REWIND_DATA_DIR=" + dir), []string{"stat", "s"}, 0, "version         1"},
		{"--data-dir over REWIND_DATA_DIR", cleanEnv("REWIND_DATA_DIR=" + other), []string{"--data-dir", dir, "stat", "s"}, 0, "version         1"},
		{"--data-dir over REWIND_SERVER", cleanEnv(down), []string{"--data-dir", dir, "stat", "s"}, 0, "version         1"},
		{"verify --data-dir despite REWIND_SERVER", cleanEnv(down), []string{"--data-dir", dir, "verify"}, 0, "ok: every checksum matches"},
		{"REWIND_SERVER without --data-dir", cleanEnv(down, "REWIND_DATA_DIR="+dir), []string{"stat"}, 9, "cannot reach"},
		{"both flags", cleanEnv(), []string{"--data-dir", dir, "--server", "http://127.0.0.1:1", "stat"}, 2, "not both"},
		{"verify is local-only", cleanEnv(), []string{"--server", "http://127.0.0.1:1", "verify"}, 2, "local-only"},
		{"bad REWIND_LOG_LEVEL", cleanEnv("REWIND_LOG_LEVEL=loud"), []string{"--data-dir", dir, "stat"}, 2, "REWIND_LOG_LEVEL"},
	}
	for _, tc := range cases {
		// Not parallel: the cases share one data directory.
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := exe(t, tc.env, "", tc.args...)
			if code != tc.status || !strings.Contains(out+errOut, tc.want) {
				t.Errorf("exit %d (want %d), output %q %q (want %q)", code, tc.status, out, errOut, tc.want)
			}
			checkMessage(t, errOut)
		})
	}
}

// TestStoreFailureStatuses: the errors of a failed disk, an append of
// unknown outcome and a changed log epoch have their own exit statuses
// (the store produces them; here they are given to the reporter).
func TestStoreFailureStatuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		status int
		code   rewind.Code
	}{
		{&rewind.FailedError{Op: "fsync segment 00000000000000000001.seg", Cause: syscall.EIO}, 10, rewind.CodeFailed},
		{fmt.Errorf("%w: the append's bytes could not be made durable", rewind.ErrOutcomeUnknown), 11, rewind.CodeOutcomeUnknown},
		{&rewind.EpochError{After: 90, Epoch: 1, Current: 2, CutAt: 80}, 12, rewind.CodeEpochChanged},
		{fmt.Errorf("%w: the server is shutting down", rewind.ErrClosed), 9, rewind.CodeClosed},
		{errors.New("disk on fire"), 1, rewind.CodeInternal},
	} {
		var out, errOut bytes.Buffer
		a := newApp(strings.NewReader(""), &out, &errOut)
		a.jsonOut = true
		status := a.report(tc.err)
		code, msg := jsonError(t, out.String())
		if status != tc.status || code != string(tc.code) || strings.Count(errOut.String(), "rewind:") != 1 ||
			!strings.Contains(errOut.String(), strings.TrimPrefix(msg, "rewind: ")) {
			t.Errorf("%v: status %d code %s stderr %q; want %d %s", tc.err, status, code, errOut.String(), tc.status, tc.code)
		}
	}
}
