package cli

import (
	"time"

	"github.com/rewindhq/rewind/client"
)

// newClient returns a client of --server with --token.
func (a *app) newClient() (*client.Client, error) { return a.newClientWith(client.Config{}) }

// newClientWith is newClient with more settings.
func (a *app) newClientWith(cfg client.Config) (*client.Client, error) {
	if a.server == "" {
		return nil, invalidFlag("server", "", "this command needs a server: give --server URL (or set REWIND_SERVER)")
	}
	cfg.Token = a.token
	if a.tailClient {
		cfg.MaxRetries, cfg.MaxBackoff = -1, 50*time.Millisecond
	}
	return client.New(a.server, cfg)
}

func (a *app) openRemote() (eventStore, error) {
	c, err := a.newClient()
	if err != nil {
		return nil, err
	}
	return c, nil
}
