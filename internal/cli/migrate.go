package cli

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind/pgstore"
)

func (a *app) migrateCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the schema of a PostgreSQL store",
		Long: `Create the schema of --store-schema (default rewind) in the PostgreSQL database of
--store, or bring it up to this binary's version, applying each migration not yet
applied in its own transaction. Running it again does nothing (it reads the
version first and needs no right to create then); runs racing each other take
turns. A role PostgreSQL refuses exits 8 (permission_denied), saying what to grant. Nothing else ever changes the schema: a store whose schema is
older than the binary refuses to open and says to run this; one whose schema is
newer refuses too (this binary is older than the database schema).`,
		Example: `  rewind migrate --store postgres://rewind@db:5432/events
  REWIND_STORE=postgres://rewind@db/events rewind migrate --store-schema orders --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.storeURL == "" {
				return usageError(cmd, errors.New("give the PostgreSQL store with --store postgres://user@host:5432/db "+
					"(or REWIND_STORE)"))
			}
			if a.storeSchema == "" {
				return emptySchema("store-schema")
			}
			res, err := pgstore.Migrate(cmd.Context(), a.storeURL, pgstore.Config{Schema: a.storeSchema})
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(res)
			}
			if len(res.Applied) == 0 {
				a.printf("schema %s is at version %d: nothing to do\n", res.Schema, res.To)
				return nil
			}
			a.printf("schema %s: version %d -> %d (applied %s)\n", res.Schema, res.From, res.To, strings.Join(res.Applied, ", "))
			return nil
		},
	}
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}
