package apiconv

// Headers of a Consume stream's request by which a client bounds what the
// server sends its member (see docs/consumer.md). Both are optional: a
// client that sends neither gets what it always got.
const (
	// HeaderConsumeLimit is the most deliveries the member is sent, in
	// all: a client that stops after N events takes no more than N.
	HeaderConsumeLimit = "Rewind-Consume-Limit"
	// HeaderConsumeWindow is, in an at-most-once group, the most
	// deliveries sent and not yet reported handled: the client acks an
	// at-most-once delivery once its handler returned (the ack only says
	// so: the event was done before it was sent). An at-most-once
	// delivery waiting in the client when it stops is lost, so a client
	// asks for as many as it has handlers. Other modes ignore it.
	HeaderConsumeWindow = "Rewind-Consume-Window"
)

// Headers of a ResetGroup response that carry what the protobuf ResetPlan
// has no field for: whether the target was clamped to a bounded group's
// start, and the note saying so.
const (
	HeaderResetClamped = "Rewind-Reset-Clamped"
	HeaderResetNote    = "Rewind-Reset-Note"
)
