package cli

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/internal/config"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the server's access tokens",
		Long: `Create, list and revoke access tokens. With --server (and an admin token in
--token) the running server does it; without, the token file in --data-dir is
edited directly, which only works while no server uses that directory, and
only on a directory that exists (a mistyped --data-dir is not created).

A lost admin secret is recovered that way: stop the server, then
  rewind token create --name admin-2 --allow 'admin:*' --data-dir DIR
prints a new admin secret.

A scope is read, write or admin on a pattern of stream names, where '*' matches
any run of characters: read:*, write:orders-*, admin:orders-*. write implies
read and admin implies both; admin also deletes streams, and admin:* manages
tokens.`,
	}
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenListCmd(), a.tokenRevokeCmd())
	return cmd
}

// tokenOut is how a token is printed.
type tokenOut struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Secret    string    `json:"secret,omitempty"`
}

func fromAuth(t auth.Token) tokenOut {
	return tokenOut{ID: t.ID, Name: t.Name, Scopes: t.ScopeStrings(), CreatedAt: t.CreatedAt, RevokedAt: t.RevokedAt,
		ExpiresAt: t.ExpiresAt}
}

func fromClient(t client.Token) tokenOut {
	return tokenOut{ID: t.ID, Name: t.Name, Scopes: t.Scopes, CreatedAt: t.CreatedAt, RevokedAt: t.RevokedAt,
		ExpiresAt: t.ExpiresAt}
}

// state says whether a token works, and until when.
func (t tokenOut) state(now time.Time) string {
	switch {
	case !t.RevokedAt.IsZero():
		return "revoked " + t.RevokedAt.Format(time.RFC3339)
	case t.ExpiresAt.IsZero():
		return "active"
	case !now.Before(t.ExpiresAt):
		return "expired " + t.ExpiresAt.Format(time.RFC3339)
	}
	return "active, expires " + t.ExpiresAt.Format(time.RFC3339)
}

// withTokens runs remote with a client of --server, or local with the
// token file of --data-dir.
// Only create may start a token file; list and revoke (readOnly) need one,
// or a store, in --data-dir.
func (a *app) withTokens(readOnly bool, remote func(*client.Client) error, local func(*auth.Store) error) error {
	if a.server != "" {
		c, err := a.newClient()
		if err != nil {
			return err
		}
		defer c.Close()
		return remote(c)
	}
	if err := a.checkTokenDir(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(a.dataDir, auth.FileName)); readOnly && err != nil {
		if err := a.checkDataDir(); err != nil {
			return err
		}
	}
	s, err := auth.Open(a.dataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	err = local(s)
	if errors.Is(err, auth.ErrTokenNotFound) {
		return &cliError{code: rewind.CodeNotFound, status: 3, msg: err.Error()}
	}
	return err // a name taken is rewind.ErrAlreadyExists: a conflict
}

// checkTokenDir fails with a not-found error naming --data-dir unless it is
// an existing directory: the token commands never create one, so that a
// mistyped path is an error rather than a new, empty token file.
func (a *app) checkTokenDir() error {
	st, err := os.Stat(a.dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return notFound("no data directory %s: it does not exist; give the data directory of the store and its tokens "+
			"with --data-dir (or REWIND_DATA_DIR), or a server with --server", a.dataDir)
	case err != nil:
		return err
	case !st.IsDir():
		return notFound("no data directory %s: it is not a directory; give the data directory with --data-dir", a.dataDir)
	}
	return nil
}

func (a *app) tokenCreateCmd() *cobra.Command {
	var (
		name    string
		allow   []string
		ttl     time.Duration
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print its secret (shown only this once)",
		Long: `Create a token with the scopes given by --allow and print its secret, which is
shown only this once: the server keeps only its hash.

With --ttl the token expires that long after its creation: from then on it is
refused as a revoked token is, and the streams it opened end. Without, it
works until it is revoked.`,
		Example: `  rewind token create --name orders-svc --allow write:orders-* --allow read:* --server http://127.0.0.1:7070 --token $ADMIN
  rewind token create --name ci --allow read:* --ttl 24h --server http://127.0.0.1:7070 --token $ADMIN
  rewind token create --name ops --allow admin:* --data-dir ./rewind-data`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// --ttl 0s is not "never": a token expired at birth is a
			// mistake, refused like a negative TTL.
			if ttl < time.Second && (ttl != 0 || cmd.Flags().Changed("ttl")) {
				return invalidFlag("ttl", ttl.String(), "must be at least 1s, such as 24h or 720h; leave it out for a "+
					"token that lasts until it is revoked")
			}
			var out tokenOut
			err := a.withTokens(false, func(c *client.Client) error {
				t, secret, err := c.CreateExpiringToken(cmd.Context(), name, ttl, allow...)
				out = fromClient(t)
				out.Secret = secret
				return err
			}, func(s *auth.Store) error {
				scopes, err := auth.ParseScopes(allow)
				if err != nil {
					return err
				}
				t, secret, err := s.Create(name, scopes, ttl)
				out = fromAuth(t)
				out.Secret = secret
				return err
			})
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(out)
			}
			expiry := ""
			if !out.ExpiresAt.IsZero() {
				expiry = ", expiring " + out.ExpiresAt.Format(time.RFC3339)
			}
			a.printf("created token %s (id %s) with scopes %v%s\nsecret (shown only now; the server keeps only its hash):\n\n  %s\n\n",
				out.Name, out.ID, out.Scopes, expiry, out.Secret)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the token, such as the service that uses it")
	cmd.Flags().StringArrayVar(&allow, "allow", nil, "a scope, such as write:orders-* (repeat for more)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "expire the token this long after its creation, such as 24h (default: never)")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("allow")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) tokenListCmd() *cobra.Command {
	var all, jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []tokenOut
			err := a.withTokens(true, func(c *client.Client) error {
				ts, err := c.ListTokens(cmd.Context(), all)
				for _, t := range ts {
					out = append(out, fromClient(t))
				}
				return err
			}, func(s *auth.Store) error {
				for _, t := range s.List(all) {
					out = append(out, fromAuth(t))
				}
				return nil
			})
			if err != nil {
				return err
			}
			if jsonOut {
				if out == nil {
					out = []tokenOut{}
				}
				return a.printJSON(out)
			}
			now := time.Now()
			for _, t := range out {
				a.printf("%s  %-20s %-40s created %s  %s\n", t.ID, t.Name, strings.Join(t.Scopes, ","),
					t.CreatedAt.Format(time.RFC3339), t.state(now))
			}
			return nil
		},
	}
	config.BoolVar(cmd.Flags(), &all, "all", false, "include revoked and expired tokens")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) tokenRevokeCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "revoke ID|NAME",
		Short: "Revoke a token: requests using it fail from then on",
		Args:  exactArgs(1, "ID or NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out tokenOut
			err := a.withTokens(true, func(c *client.Client) error {
				t, err := c.RevokeToken(cmd.Context(), args[0])
				out = fromClient(t)
				return err
			}, func(s *auth.Store) error {
				t, err := s.Revoke(args[0])
				out = fromAuth(t)
				return err
			})
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(out)
			}
			a.printf("revoked token %s (id %s)\n", out.Name, out.ID)
			return nil
		},
	}
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}
