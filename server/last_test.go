package server_test

import (
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/server"
)

// lastPosition is the served store's last acknowledged position.
func lastPosition(t testing.TB, s *server.Server) uint64 {
	t.Helper()
	p, err := s.Store().(rewind.LastPositioner).LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(p)
}
