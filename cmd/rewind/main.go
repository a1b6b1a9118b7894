// Command rewind is the event store, event bus and replay/backfill engine's
// command line. See `rewind --help`.
package main

import (
	"os"

	"github.com/rewindhq/rewind/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
