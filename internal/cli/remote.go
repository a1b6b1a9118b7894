package cli

import (
	"context"

	"github.com/rewindhq/rewind"
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
	return client.New(a.server, cfg)
}

func (a *app) openRemote() (eventStore, error) {
	c, err := a.newClient()
	if err != nil {
		return nil, err
	}
	return remote{c}, nil
}

// remote adapts *client.Client to eventStore, so that every data command
// works against a server.
type remote struct{ *client.Client }

func (r remote) Subscribe(ctx context.Context, opts rewind.SubscribeOptions) (subscription, error) {
	return r.Client.Subscribe(ctx, opts)
}

func (r remote) Stat(ctx context.Context) (storeStat, error) {
	i, err := r.ServerInfo(ctx)
	if err != nil {
		return storeStat{}, err
	}
	return storeStat{Target: r.URL(), Durability: i.Durability, FirstPosition: i.FirstPosition,
		LastPosition: i.LastPosition, Streams: i.Streams, Segments: i.Segments, Bytes: i.Bytes}, nil
}
