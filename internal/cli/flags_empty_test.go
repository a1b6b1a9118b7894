package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// commandFlag is one flag of one command of the tree, as a test case.
type commandFlag struct {
	path []string // the command's path below the root, such as [groups create]
	flag *pflag.Flag
}

// everyFlag lists every flag of every command, inherited ones included,
// so that a new command or flag is covered without a new test case.
func everyFlag(t *testing.T) []commandFlag {
	t.Helper()
	var out []commandFlag
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.InheritedFlags() // merges the parents' persistent flags into Flags
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" { // cobra's own, which prints the help first
				path := strings.Fields(c.CommandPath())[1:]
				out = append(out, commandFlag{path, f})
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{}).rootCmd())
	if len(out) < 300 {
		t.Fatalf("found only %d flags", len(out))
	}
	return out
}

// runChecked runs args through the CLI's whole command-line handling
// (parsing, the checks of flags and arguments) with every command's
// action and hooks replaced, so that nothing runs: it reports whether the
// command would have run, its exit status and its stderr.
func runChecked(args ...string) (ran bool, code int, stderr string) {
	var out, errOut bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &errOut)
	root := a.rootCmd()
	var stub func(*cobra.Command)
	stub = func(c *cobra.Command) {
		c.Run, c.PreRun, c.PreRunE, c.PostRun, c.PostRunE = nil, nil, nil, nil, nil
		c.PersistentPreRun, c.PersistentPreRunE, c.PersistentPostRun, c.PersistentPostRunE = nil, nil, nil, nil
		c.RunE = func(*cobra.Command, []string) error { ran = true; return nil }
		for _, sub := range c.Commands() {
			stub(sub)
		}
	}
	stub(root)
	code = a.execute(context.Background(), root, args)
	return ran, code, errOut.String()
}

// refusedFor reports whether stderr refuses the value of flag name.
func refusedFor(stderr, name string) bool {
	return strings.Contains(stderr, "invalid --"+name+":") || strings.Contains(stderr, "invalid --"+name+` "`)
}

// TestEveryFlagRefusesAnEmptyValue: on every command, every flag given ”
// or blanks is refused (exit status 2, naming the flag) before the
// command runs, unless the flag is marked as taking it; then its help says
// what ” means. groups create --end ” made a group without an end.
func TestEveryFlagRefusesAnEmptyValue(t *testing.T) {
	t.Parallel()
	for _, cf := range everyFlag(t) {
		name := cf.flag.Name
		for _, value := range []string{"", "  "} {
			args := append(slices.Clone(cf.path), "--"+name+"="+value)
			ran, code, stderr := runChecked(args...)
			if meaning := cf.flag.Annotations[allowEmptyAnnotation]; len(meaning) > 0 {
				// It may still fail for want of its arguments, not for --name.
				if !ran && refusedFor(stderr, name) {
					t.Errorf("%v: refused though --%s takes '': %d %q", args, name, code, stderr)
				}
				if !strings.Contains(cf.flag.Usage, "'' is "+meaning[0]) {
					t.Errorf("--%s takes '' but its help does not say what it means: %q", name, cf.flag.Usage)
				}
				continue
			}
			if ran || code != 2 || !refusedFor(stderr, name) {
				t.Errorf("%v: ran %v, status %d, stderr %q; want --%s refused", args, ran, code, stderr, name)
			}
		}
	}
}

// TestEverySingleValuedFlagRefusedTwice: on every command, a flag that
// does not take a list is refused when given twice, instead of the last
// one winning (groups create --end position:5 --end time:… made an end
// of the time); a list flag given twice adds up, as its help says.
func TestEverySingleValuedFlagRefusedTwice(t *testing.T) {
	t.Parallel()
	for _, cf := range everyFlag(t) {
		name := cf.flag.Name
		arg := "--" + name
		if cf.flag.Value.Type() != "bool" {
			// A value the flag takes, so that only the repetition is wrong.
			value := ""
			for _, v := range []string{cf.flag.DefValue, "1", "x", "1s", "true"} {
				if v != "" && v != "[]" && cf.flag.Value.Set(v) == nil {
					value = v
					break
				}
			}
			if value == "" {
				t.Errorf("%v --%s: no value found to test it with", cf.path, name)
				continue
			}
			arg += "=" + value
		}
		args := append(slices.Clone(cf.path), arg, arg)
		ran, code, stderr := runChecked(args...)
		if repeatable(cf.flag) {
			if !ran && (strings.Contains(stderr, "given twice") || refusedFor(stderr, name)) {
				t.Errorf("%v: a list flag given twice is refused: %d %q", args, code, stderr)
			}
			if !strings.Contains(cf.flag.Usage, "repeat") && !strings.Contains(cf.flag.Usage, "comma separated") {
				t.Errorf("--%s takes a list but its help does not say so: %q", name, cf.flag.Usage)
			}
			continue
		}
		if ran || code != 2 || !strings.Contains(stderr, arg[:len("--"+name)]+" is given twice") || !strings.Contains(stderr, "give it once") {
			t.Errorf("%v: ran %v, status %d, stderr %q; want refused as given twice", args, ran, code, stderr)
		}
	}
}

// tree lists the files of dir with their sizes and modification times.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[path] = fmt.Sprint(info.ModTime(), info.Mode(), info.Size())
		return nil
	})
	return out
}

// TestEmptyOrRepeatedFlagChangesNothing: the testers' cases, through the
// real commands on a real data directory: each is refused with exit status
// 2 and, with --json, an invalid_argument error naming the flag; no group
// is created, the data directory is not touched, and a data directory
// that does not exist is not created.
func TestEmptyOrRepeatedFlagChangesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := 0; i < 12; i++ {
		if code, _, errOut := run(t, dir, "", "append", "s", "--type", "A", "--data", "1"); code != 0 {
			t.Fatal(errOut)
		}
	}
	before := tree(t, dir)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"groups", "create", "g", "--end", ""}, "--end"},
		{[]string{"groups", "create", "g", "--end", " "}, "--end"},
		{[]string{"groups", "create", "g", "--end", "position:5", "--end", "time:2099-01-01T00:00:00Z"}, "--end is given twice"},
		{[]string{"groups", "create", "g", "--prefix", ""}, "--prefix"},
		{[]string{"groups", "create", "g", "--types", ""}, "--types"},
		{[]string{"groups", "create", "g", "--types", "A,,B"}, "--types"},
		{[]string{"groups", "create", "g", "--mode", ""}, "--mode"},
		{[]string{"groups", "create", "g", "--backoff", ""}, "--backoff"},
		{[]string{"groups", "create", "g", "--order-by", ""}, "--order-by"},
		{[]string{"groups", "create", "g", "--priority", ""}, "--priority"},
		{[]string{"replay", "--to", ""}, "--to"},
		{[]string{"replay", "--from", ""}, "--from"},
		{[]string{"replay", "--prefix", ""}, "--prefix"},
		{[]string{"replay", "--rate", ""}, "--rate"},
		{[]string{"replay", "--speed", ""}, "--speed"},
		{[]string{"replay", "--to", "5", "--to", "10"}, "--to is given twice"},
		{[]string{"append", "s", "--type", "A", "--data", "1", "--type", "B"}, "--type is given twice"},
	}
	for _, tc := range cases {
		code, out, errOut := run(t, dir, "", append(tc.args, "--json")...)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if code != 2 || json.Unmarshal([]byte(out), &e) != nil || e.Error.Code != "invalid_argument" ||
			!strings.Contains(e.Error.Message, tc.want) || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want invalid_argument naming %s", tc.args, code, out, errOut, tc.want)
		}
	}
	if after := tree(t, dir); !maps.Equal(before, after) {
		t.Errorf("the data directory changed:\nbefore %v\nafter  %v", before, after)
	}
	if code, out, errOut := run(t, dir, "", "groups", "ls", "--json"); code != 0 || strings.TrimSpace(out) != `{"groups":[]}` {
		t.Errorf("groups after the refusals: %d %q %s", code, out, errOut)
	}
	missing := filepath.Join(t.TempDir(), "new")
	if code, _, _ := run(t, missing, "", "groups", "create", "g", "--end", ""); code != 2 {
		t.Errorf("status %d", code)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a refused command made %s: %v", missing, err)
	}
}

// TestEnvironmentWithStrictFlags: REWIND_* variables still fill the flags
// the command line leaves out (that is not a flag given twice), a flag
// still wins over its variable, an empty variable counts as unset, and a
// blank one is refused, naming the variable.
func TestEnvironmentWithStrictFlags(t *testing.T) {
	t.Parallel()
	envDir, flagDir := t.TempDir(), t.TempDir()
	env := cleanEnv("REWIND_DATA_DIR="+envDir, "REWIND_LOG_LEVEL=", "REWIND_TOKEN=")
	if code, _, errOut := exe(t, env, "", "append", "s", "--type", "A"); code != 0 {
		t.Fatalf("append into $REWIND_DATA_DIR: %d %s", code, errOut)
	}
	if code, _, errOut := exe(t, env, "", "--data-dir", flagDir, "append", "t", "--type", "A"); code != 0 {
		t.Fatalf("--data-dir over $REWIND_DATA_DIR: %d %s", code, errOut)
	}
	if code, out, errOut := exe(t, env, "", "streams", "--json"); code != 0 || !strings.Contains(out, `"s"`) || strings.Contains(out, `"t"`) {
		t.Fatalf("streams of $REWIND_DATA_DIR: %d %q %s", code, out, errOut)
	}
	if code, out, errOut := exe(t, env, "", "--data-dir", flagDir, "streams", "--json"); code != 0 || !strings.Contains(out, `"t"`) {
		t.Fatalf("streams of --data-dir: %d %q %s", code, out, errOut)
	}
	blank := cleanEnv("REWIND_DATA_DIR="+envDir, "REWIND_STORE_SCHEMA= ")
	code, out, errOut := exe(t, blank, "", "streams", "--json")
	if code != 2 || !strings.Contains(errOut, `REWIND_STORE_SCHEMA " "`) || !strings.Contains(out, `"invalid_argument"`) {
		t.Fatalf("a blank variable: %d %q %q", code, out, errOut)
	}
}
