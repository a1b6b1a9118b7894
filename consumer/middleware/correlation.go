package middleware

import (
	"context"
	"maps"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
)

// The metadata keys of correlation and causation ids.
const (
	CorrelationKey = "correlation_id"
	CausationKey   = "causation_id"
)

type ctxKey struct{}

// Trace is the correlation of the event being handled.
type Trace struct {
	// CorrelationID is the id of the conversation: the event's own
	// correlation id, or its event id when it starts one.
	CorrelationID string
	// CausationID is the id of the event being handled: the cause of the
	// events the handler appends.
	CausationID string
}

// Correlation puts the event's Trace in the handler's context, so that
// the events the handler appends carry them (see Outgoing) and its logs
// can name them.
func Correlation() consumer.Middleware {
	return func(h consumer.Handler) consumer.Handler {
		return func(ctx context.Context, m *consumer.Message) error {
			tr := Trace{CorrelationID: m.Event.Metadata[CorrelationKey], CausationID: m.Event.ID.String()}
			if tr.CorrelationID == "" {
				tr.CorrelationID = tr.CausationID
			}
			return h(context.WithValue(ctx, ctxKey{}, tr), m)
		}
	}
}

// TraceFrom returns the Trace Correlation put in ctx, if any.
func TraceFrom(ctx context.Context) (Trace, bool) {
	tr, ok := ctx.Value(ctxKey{}).(Trace)
	return tr, ok
}

// Outgoing returns ev with the correlation id of the event being handled
// and, as its causation id, that event's id, unless ev sets them itself.
// Without a Trace in ctx it returns ev unchanged.
func Outgoing(ctx context.Context, ev rewind.Event) rewind.Event {
	tr, ok := TraceFrom(ctx)
	if !ok {
		return ev
	}
	md := maps.Clone(ev.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	if md[CorrelationKey] == "" {
		md[CorrelationKey] = tr.CorrelationID
	}
	if md[CausationKey] == "" {
		md[CausationKey] = tr.CausationID
	}
	ev.Metadata = md
	return ev
}
