package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonProblem explains why protojson refused a JSON body, naming the field
// by its path as the client wrote it and what its value must be, such as
// "events[0].data must be base64". protojson's own errors name a field but
// not where it is nor the encoding it expects. It runs only once protojson
// has refused the body, and returns "" when it finds nothing to say, so it
// never decides what is accepted; its checks are at most as strict as
// protojson's, so that it does not blame a field protojson took.
func jsonProblem(body []byte, md protoreflect.MessageDescriptor) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "" // a syntax error: protojson's message has its position
	}
	if _, err := dec.Token(); err == nil {
		return "the body holds more than one JSON value; send one object"
	}
	return messageProblem(v, md, "")
}

func messageProblem(v any, md protoreflect.MessageDescriptor, path string) string {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Sprintf("%s must be a JSON object (a %s)", orBody(path), md.Name())
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fields := md.Fields()
	oneofs := map[protoreflect.FullName]string{}
	for _, k := range keys {
		at := join(path, k)
		fd := fields.ByJSONName(k)
		if fd == nil {
			fd = fields.ByTextName(k)
		}
		if fd == nil {
			return fmt.Sprintf("%s is not a field of %s; its fields are %s", at, md.Name(), fieldNames(md))
		}
		if obj[k] == nil {
			continue // null is the field's default
		}
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
			if other, ok := oneofs[o.FullName()]; ok {
				return fmt.Sprintf("%s and %s are alternatives: set only one", join(path, other), at)
			}
			oneofs[o.FullName()] = k
		}
		if p := fieldProblem(obj[k], fd, at); p != "" {
			return p
		}
	}
	return ""
}

func fieldProblem(v any, fd protoreflect.FieldDescriptor, path string) string {
	switch {
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			return path + " must be a JSON object of keys and values"
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if p := valueProblem(obj[k], fd.MapValue(), path+"["+strconv.Quote(k)+"]"); p != "" {
				return p
			}
		}
	case fd.IsList():
		arr, ok := v.([]any)
		if !ok {
			return path + " must be a JSON array"
		}
		for i, e := range arr {
			if p := valueProblem(e, fd, fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	default:
		return valueProblem(v, fd, path)
	}
	return ""
}

func valueProblem(v any, fd protoreflect.FieldDescriptor, path string) string {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return path + " must be true or false"
		}
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			return path + " must be a JSON string"
		}
	case protoreflect.BytesKind:
		if s, ok := v.(string); !ok || !isBase64(s) {
			return path + ` must be base64 (standard or URL-safe), such as "eyJ0b3RhbCI6MTJ9" for {"total":12}`
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return integerProblem(v, path, big.NewInt(math.MinInt32), big.NewInt(math.MaxInt32))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return integerProblem(v, path, big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return integerProblem(v, path, new(big.Int), big.NewInt(math.MaxUint32))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return integerProblem(v, path, new(big.Int), new(big.Int).SetUint64(math.MaxUint64))
	case protoreflect.EnumKind:
		return enumProblem(v, fd.Enum(), path)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch fd.Message().FullName() {
		case "google.protobuf.Timestamp":
			if s, ok := v.(string); !ok || !isTimestamp(s) {
				return path + ` must be an RFC 3339 time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z ` +
					`in a string, such as "2024-05-01T12:00:00Z"`
			}
		case "google.protobuf.Duration":
			if s, ok := v.(string); !ok || !isDuration(s) {
				return path + ` must be a duration in seconds in a string, at most 315576000000s either way, ` +
					`such as "3600s" or "1.5s"`
			}
		default:
			return messageProblem(v, fd.Message(), path)
		}
	}
	return ""
}

// integerProblem accepts what protojson accepts for an integer field: a
// JSON number or a string holding one, with an integral value in range.
// The value is compared exactly: as a float64, 2^64 would pass for the
// largest uint64.
func integerProblem(v any, path string, lo, hi *big.Int) string {
	var s string
	switch n := v.(type) {
	case json.Number:
		s = n.String()
	case string:
		s = n
	default:
		return fmt.Sprintf("%s must be a whole number (a JSON number, or a string for 64-bit values)", path)
	}
	// 256 bits hold every integer in range exactly, and a huge exponent
	// ("1e99999999") costs no more than a small one.
	f, _, err := big.ParseFloat(strings.TrimSpace(s), 10, 256, big.ToNearestEven)
	if err != nil || !f.IsInt() || f.Cmp(new(big.Float).SetInt(lo)) < 0 || f.Cmp(new(big.Float).SetInt(hi)) > 0 {
		return fmt.Sprintf("%s must be a whole number from %s to %s, got %s", path, lo, hi, s)
	}
	return ""
}

func enumProblem(v any, ed protoreflect.EnumDescriptor, path string) string {
	switch e := v.(type) {
	case string:
		if ed.Values().ByName(protoreflect.Name(e)) != nil {
			return ""
		}
	case json.Number:
		if _, err := strconv.ParseInt(e.String(), 10, 32); err == nil {
			return ""
		}
	}
	names := make([]string, ed.Values().Len())
	for i := range names {
		names[i] = string(ed.Values().Get(i).Name())
	}
	return fmt.Sprintf("%s must be one of %s", path, strings.Join(names, ", "))
}

func isBase64(s string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding,
		base64.RawURLEncoding} {
		if _, err := enc.DecodeString(s); err == nil {
			return true
		}
	}
	return false
}

// isTimestamp accepts an RFC 3339 time in the range of
// google.protobuf.Timestamp, years 1 to 9999.
func isTimestamp(s string) bool {
	t, err := time.Parse(time.RFC3339Nano, s)
	return err == nil && t.Unix() >= minTimestamp && t.Unix() <= maxTimestamp
}

// The range of google.protobuf.Timestamp and Duration, in seconds.
const (
	minTimestamp = -62135596800 // 0001-01-01T00:00:00Z
	maxTimestamp = 253402300799 // 9999-12-31T23:59:59Z
	maxDuration  = 315576000000 // 10,000 years
)

// isDuration accepts seconds with an "s" in the range of
// google.protobuf.Duration.
func isDuration(s string) bool {
	n, ok := strings.CutSuffix(s, "s")
	f, err := strconv.ParseFloat(n, 64)
	return ok && err == nil && math.Abs(f) <= maxDuration
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orBody(path string) string {
	if path == "" {
		return "the body"
	}
	return path
}

// fieldNames lists a message's fields by their JSON names.
func fieldNames(md protoreflect.MessageDescriptor) string {
	fields := md.Fields()
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = fields.Get(i).JSONName()
	}
	return strings.Join(names, ", ")
}
