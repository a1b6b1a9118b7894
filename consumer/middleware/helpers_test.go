package middleware

import (
	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
)

func msg(md map[string]string) *consumer.Message {
	ev := &rewind.RecordedEvent{Event: rewind.Event{ID: uuid.Must(uuid.NewV7()), Type: "T", Metadata: md},
		Stream: "s", Version: 1, Position: 1}
	return consumer.NewMessage("g", consumer.Delivery{ID: 1, Event: ev, Attempt: 1})
}
