package store

import (
	"os"
	"testing"

	"github.com/rewindhq/rewind/internal/crashtest"
)

func TestMain(m *testing.M) {
	crashtest.Main(map[string]crashtest.ChildFunc{"store-appender": crashAppender})
	os.Exit(m.Run())
}
