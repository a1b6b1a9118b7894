package logcopy_test

import (
	"os"
	"testing"

	"github.com/rewindhq/rewind/internal/pgtest"
)

// TestMain drops the tests' databases in the background (see pgtest.Run).
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
