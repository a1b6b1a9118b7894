package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
)

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show and verify the hash-chained audit ledger",
		Long: `The audit ledger records who did what with which build of rewind: every backfill
run planned, started, chunk committed, retried, skipped, failed, resumed and finished.
Each entry holds the hash of the one before it, and PostgreSQL rejects updates and
deletes of entries. 'verify' recomputes the chain and names the first entry that was
altered, removed or inserted. The ledger lives in the rewind schema of --ledger-dsn,
else of --dsn ($REWIND_LEDGER_DSN, $REWIND_DSN). See docs/audit.md.`,
	}
	cmd.AddCommand(a.auditVerifyCmd(), a.auditLogCmd())
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
	var expectHead string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the chain and name the first altered, removed or inserted entry",
		Long: `Recompute every entry's hash and link, and compare the chain's end with the recorded
head. Exits 0 and prints the head (sequence number and hash) when the ledger is intact;
exits 5 naming the first entry that was altered, removed or inserted otherwise. Keep the
printed head somewhere else and pass it back with --expect-head to detect a rewrite of
the whole ledger from that point.`,
		Args: cobra.NoArgs,
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
			if expectHead != "" {
				if err := checkHead(cmd, l, expectHead); err != nil {
					return err
				}
			}
			if jsonOut {
				return a.printJSON(map[string]any{"ok": true, "entries": s.Entries, "head_seq": s.HeadSeq, "head_hash": s.HeadHash})
			}
			a.printf("audit ledger intact: %d entries, head %d:%s\n", s.Entries, s.HeadSeq, s.HeadHash)
			return nil
		},
	}
	pg.add(cmd)
	cmd.Flags().StringVar(&expectHead, "expect-head", "", "SEQ:HASH printed by an earlier verify; fail unless that entry still has that hash")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// checkHead checks that entry SEQ still has HASH.
func checkHead(cmd *cobra.Command, l *auditpg.Ledger, head string) error {
	var seq int64
	var hash string
	if _, err := fmt.Sscanf(strings.Replace(head, ":", " ", 1), "%d %s", &seq, &hash); err != nil || seq < 1 {
		return invalidFlag("expect-head", head, "must be SEQ:HASH as printed by verify")
	}
	for e, err := range l.Entries(cmd.Context(), auditpg.Filter{AfterSeq: seq - 1, Limit: 1}) {
		if err != nil {
			return err
		}
		if e.Seq == seq && e.Hash == hash {
			return nil
		}
		break
	}
	return &audit.TamperError{Seq: seq, Problem: audit.Altered, Reason: "it no longer has the hash recorded earlier (" + hash + ")"}
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
		Args:  cobra.NoArgs,
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
	cmd.Flags().Int64Var(&after, "after", 0, "show entries after this sequence number")
	cmd.Flags().IntVar(&limit, "limit", 0, "show at most this many entries (0: all)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) printEntry(e *audit.Entry) {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(e.Counts)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, e.Counts[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Attrs)) {
		if _, dup := e.Counts[k]; dup || k == "binary" || k == "job" || k == "job_version" || k == "input_checksum" || k == "output_checksum" || e.Attrs[k] == "" {
			continue
		}
		v := e.Attrs[k]
		if k == "job_hash" || k == "plan_hash" {
			v = v[:min(12, len(v))]
		}
		parts = append(parts, k+"="+v)
	}
	if e.Message != "" {
		parts = append(parts, fmt.Sprintf("message=%q", e.Message))
	}
	a.printf("%6d  %s  %-26s %s  %s@%s  %s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Kind, e.Subject, e.Actor, e.Host,
		strings.Join(parts, " "))
}
