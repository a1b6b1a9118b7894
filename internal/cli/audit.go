package cli

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/internal/config"
)

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show and verify the hash-chained audit ledger",
		Long: `The audit ledger records who did what with which build of rewind: every backfill
run planned, started, chunk committed, retried, skipped, failed, resumed and finished.
Each entry holds the hash of the one before it, and PostgreSQL rejects updates and
deletes of entries. 'verify' hashes every entry's stored bytes and names the first entry
that was altered, removed, inserted or moved; 'head' prints the head to record outside
the database, which 'verify --expect-head' checks later. The ledger lives in the rewind
schema of --ledger-dsn, else of --dsn ($REWIND_LEDGER_DSN, $REWIND_DSN). See docs/audit.md.`,
	}
	cmd.AddCommand(a.auditVerifyCmd(), a.auditHeadCmd(), a.auditLogCmd())
	return cmd
}

func (a *app) auditLedger(cmd *cobra.Command, pg *pgFlags) (*auditpg.Ledger, func(), error) {
	work, ledger, closeAll, err := pg.pools(cmd.Context())
	if err != nil {
		return nil, nil, err
	}
	if ledger == nil {
		ledger = work
	}
	l, err := auditpg.New(ledger, auditpg.Config{})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return l, closeAll, nil
}

func (a *app) auditVerifyCmd() *cobra.Command {
	var pg pgFlags
	var jsonOut bool
	var expect []string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Hash every entry's stored bytes and name the first altered, removed, inserted or moved entry",
		Long: `Hash every entry's stored bytes, check every link and sequence number, and compare the
chain's end with the recorded head. Exits 0 and prints the head (SEQ:HASH) when the ledger
is intact; exits 5 naming the first entry that was altered, removed, inserted or moved
otherwise.

On its own the ledger cannot tell a tail rewritten with its hashes and head (or cut off,
with the head moved back) by someone who can disable its triggers. Record the head outside
the database ('rewind audit head', into a ticket, a commit, another system's log) and give
it back with --expect-head SEQ:HASH (repeatable): verify then fails unless entry SEQ still
has HASH, which catches any rewrite of the entries up to it. See docs/audit.md.`,
		Example: `  rewind audit verify --dsn "$DSN"
  rewind audit verify --expect-head 1042:5be2…e0 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			anchors, err := parseHeads(expect)
			if err != nil {
				return err
			}
			l, closeAll, err := a.auditLedger(cmd, &pg)
			if err != nil {
				return err
			}
			defer closeAll()
			s, err := l.Verify(cmd.Context(), anchors...)
			var te *audit.TamperError
			if errors.As(err, &te) && jsonOut {
				// The entry and the problem as fields, for a script to act on.
				if perr := a.printJSON(map[string]any{"ok": false, "seq": te.Seq, "problem": te.Problem, "reason": te.Reason,
					"error": map[string]any{"code": rewind.CodeCorruption, "message": trimPrefix(err.Error())}}); perr != nil {
					return perr
				}
				return &cliError{code: rewind.CodeCorruption, status: exitStatus(rewind.CodeCorruption), msg: err.Error(), quiet: true}
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{"ok": true, "entries": s.Entries, "head_seq": s.HeadSeq, "head_hash": s.HeadHash,
					"head": s.Head().String(), "anchors_checked": len(anchors)})
			}
			a.printf("audit ledger intact: %d entries, head %s\n", s.Entries, s.Head())
			if len(anchors) > 0 {
				a.printf("and it still holds the %d recorded head(s) given with --expect-head\n", len(anchors))
			}
			return nil
		},
	}
	pg.add(cmd)
	cmd.Flags().StringArrayVar(&expect, "expect-head", nil,
		"SEQ:HASH recorded earlier (by 'audit head' or 'audit verify'); fail unless entry SEQ still has HASH (repeatable)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func parseHeads(vals []string) ([]audit.Head, error) {
	var out []audit.Head
	for _, v := range vals {
		h, err := audit.ParseHead(v)
		if err != nil {
			return nil, invalidFlag("expect-head", v, "must be SEQ:HASH as printed by 'rewind audit head': a sequence number from 1, a colon and 64 hex digits")
		}
		out = append(out, h)
	}
	return out, nil
}

func (a *app) auditHeadCmd() *cobra.Command {
	var pg pgFlags
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "head",
		Short: "Verify the ledger and print its head (SEQ:HASH) for recording outside it",
		Long: `Verify the ledger, then print its head, SEQ:HASH, alone on a line, for recording
outside the database: in a ticket, a commit, a chat channel, another system's audit log.
Later, 'rewind audit verify --expect-head SEQ:HASH' fails unless entry SEQ still has HASH:
a ledger rewritten (hashes and head included) from any entry up to SEQ, or cut short of it,
is caught. Exits 5 without printing a head when the ledger is not intact.`,
		Example: `  rewind audit head --dsn "$DSN" | logger -t rewind-audit-head`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, closeAll, err := a.auditLedger(cmd, &pg)
			if err != nil {
				return err
			}
			defer closeAll()
			s, err := l.Verify(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{"head": s.Head().String(), "seq": s.HeadSeq, "hash": s.HeadHash, "entries": s.Entries})
			}
			a.printf("%s\n", s.Head())
			return nil
		},
	}
	pg.add(cmd)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) auditLogCmd() *cobra.Command {
	var pg pgFlags
	var jsonOut bool
	var run string
	var after int64
	var limit int
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Show audit ledger entries, oldest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, closeAll, err := a.auditLedger(cmd, &pg)
			if err != nil {
				return err
			}
			defer closeAll()
			if run != "" && len(run) < 36 { // a run id prefix, as backfill commands accept
				r, closeRunner, err := pg.runner(cmd.Context(), nil)
				if err != nil {
					return err
				}
				st, err := r.Status(cmd.Context(), run)
				closeRunner()
				if err != nil {
					return err
				}
				run = st.ID
			}
			for e, err := range l.Entries(cmd.Context(), auditpg.Filter{Subject: run, AfterSeq: after, Limit: limit}) {
				if err != nil {
					return err
				}
				if jsonOut {
					if err := a.printJSON(e); err != nil {
						return err
					}
					continue
				}
				a.printEntry(&e)
			}
			return nil
		},
	}
	pg.add(cmd)
	cmd.Flags().StringVar(&run, "run", "", "show only entries about this run (an id or a unique prefix)")
	config.Int64Var(cmd.Flags(), &after, "after", 0, "show entries after this sequence number")
	config.IntVar(cmd.Flags(), &limit, "limit", 0, "show at most this many entries (0: all)")
	atLeast(cmd.Flags(), 0, "after", "limit")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) printEntry(e *audit.Entry) {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(e.Counts)) {
		parts = append(parts, fmt.Sprintf("%s=%d", word(k), e.Counts[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Attrs)) {
		if _, dup := e.Counts[k]; dup || k == "binary" || k == "job" || k == "job_version" || k == "input_checksum" || k == "output_checksum" || e.Attrs[k] == "" {
			continue
		}
		v := e.Attrs[k]
		if k == "job_hash" || k == "plan_hash" {
			v = v[:min(12, len(v))]
		}
		parts = append(parts, word(k)+"="+word(v))
	}
	if e.Message != "" {
		parts = append(parts, "message="+audit.Quote(e.Message))
	}
	// Every stored text through word (the message quoted always): an entry
	// recorded with a newline, an escape sequence or an invisible character
	// in it, by any writer or by hand, can neither forge a line, nor hide
	// text, nor drive the terminal; and one with a space or '=' cannot read
	// as attributes of its own.
	a.printf("%6d  %s  %-26s %s  %s@%s  %s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), word(e.Kind), word(e.Subject),
		word(e.Actor), word(e.Host), strings.Join(parts, " "))
}
