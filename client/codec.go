package client

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// protoCodec is connect's binary protobuf codec, except that it lets a
// message decode itself from the wire format (apiconv.ConsumeFrame, the
// Consume stream's deliveries) instead of going through a protobuf
// message.
type protoCodec struct{}

// wireDecoder is a message that decodes itself.
type wireDecoder interface {
	UnmarshalProto(b []byte) error
}

func (protoCodec) Name() string { return "proto" }

func (c protoCodec) Marshal(m any) ([]byte, error) { return c.MarshalAppend(nil, m) }

// MarshalAppend lets connect marshal into its pooled buffers.
func (protoCodec) MarshalAppend(b []byte, m any) ([]byte, error) {
	msg, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.MarshalOptions{}.MarshalAppend(b, msg)
}

func (protoCodec) Unmarshal(b []byte, m any) error {
	if w, ok := m.(wireDecoder); ok {
		return w.UnmarshalProto(b)
	}
	msg, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.Unmarshal(b, msg)
}
