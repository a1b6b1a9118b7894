package server

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
)

// The server's codecs reject unknown fields, in JSON and in binary
// protobuf alike: a misspelled field must not be silently ignored (an
// "expected_verison" would turn an optimistic append into an
// unconditional one).

type strictJSON struct{ name string }

func (c strictJSON) Name() string { return c.name }

func (strictJSON) Marshal(m any) ([]byte, error) {
	if w, ok := m.(wireMessage); ok {
		m = w.message()
	}
	msg, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return protojson.MarshalOptions{}.Marshal(msg)
}

func (strictJSON) Unmarshal(b []byte, m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if len(b) == 0 {
		b = []byte("{}") // an empty body is an empty message, as in Connect's own codec
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(b, msg); err != nil {
		md := msg.ProtoReflect().Descriptor()
		if why := jsonProblem(b, md); why != "" {
			return fmt.Errorf("the JSON body does not match %s: %s", md.Name(), why)
		}
		return fmt.Errorf("the JSON body does not match %s: %w (field names are those of the API, "+
			"in snake_case or lowerCamelCase; see docs/server.md)", md.Name(), err)
	}
	return nil
}

type strictProto struct{}

func (strictProto) Name() string { return "proto" }

func (c strictProto) Marshal(m any) ([]byte, error) { return c.MarshalAppend(nil, m) }

// MarshalAppend lets connect marshal into its pooled buffers.
func (strictProto) MarshalAppend(b []byte, m any) ([]byte, error) {
	if w, ok := m.(wireMessage); ok {
		return w.appendProto(b), nil
	}
	msg, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.MarshalOptions{}.MarshalAppend(b, msg)
}

// wireMessage is a message the server writes in the protobuf wire format
// itself, on a hot path (consumeDeliveries); the JSON codecs marshal its
// protobuf message.
type wireMessage interface {
	appendProto(b []byte) []byte
	message() proto.Message
}

func (strictProto) Unmarshal(b []byte, m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if err := proto.Unmarshal(b, msg); err != nil {
		return fmt.Errorf("the protobuf body does not decode as %s: %w",
			msg.ProtoReflect().Descriptor().Name(), err)
	}
	if path := unknownFields(msg); path != "" {
		return fmt.Errorf("the protobuf body of %s has unknown fields in %s: the client uses a newer or different "+
			"API definition than this server", msg.ProtoReflect().Descriptor().Name(), path)
	}
	return nil
}

// unknownFields returns the path of the first message of msg holding
// unknown fields, or "". Appends, the hot path, are checked directly.
func unknownFields(msg proto.Message) string {
	req, ok := msg.(*rewindv1.AppendRequest)
	if !ok {
		return unknownField(msg.ProtoReflect(), "")
	}
	if len(req.ProtoReflect().GetUnknown()) > 0 {
		return "the top-level message"
	}
	for i, e := range req.GetEvents() {
		if len(e.ProtoReflect().GetUnknown()) > 0 ||
			e.GetOccurredAt() != nil && len(e.GetOccurredAt().ProtoReflect().GetUnknown()) > 0 {
			return fmt.Sprintf(".events[%d]", i)
		}
	}
	return ""
}

// unknownField returns the path of the first message holding unknown
// fields, or "".
func unknownField(m protoreflect.Message, path string) string {
	if len(m.GetUnknown()) > 0 {
		if path == "" {
			return "the top-level message"
		}
		return path
	}
	found := ""
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		name := path + "." + string(fd.Name())
		if fd.IsList() {
			l := v.List()
			for i := range l.Len() {
				if found = unknownField(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i)); found != "" {
					return false
				}
			}
			return true
		}
		found = unknownField(v.Message(), name)
		return found == ""
	})
	return found
}
