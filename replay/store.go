package replay

import (
	"context"

	"github.com/rewindhq/rewind"
)

// IntoStore returns a handler that appends each replayed event to dst, in
// order, under its own id and to the stream of the same name, with the
// expected version Any: replaying the same window into dst again writes
// nothing (dst's idempotent retry, within its dedup window). Versions in
// dst follow dst's own streams, so they match the source's only when dst
// starts empty and the window starts at the beginning of each stream.
//
// Records of soft deletes (rewind.TypeStreamDeleted) are skipped, not
// copied: deleting again on a retried replay would delete what was copied
// after the delete. Replay them into a handler of your own if you need them.
func IntoStore(dst rewind.Store) Handler {
	return func(ctx context.Context, ev *rewind.RecordedEvent) error {
		if ev.Type == rewind.TypeStreamDeleted {
			return nil
		}
		_, err := dst.Append(ctx, ev.Stream, rewind.Any, ev.Event)
		return err
	}
}
