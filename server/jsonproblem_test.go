package server

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
)

// FuzzJSONProblem checks that jsonProblem never blames a body protojson
// accepts: it explains refusals, it must not invent them.
func FuzzJSONProblem(f *testing.F) {
	for _, s := range []string{
		`{"stream":"s","events":[{"type":"T","data":"eyJ0b3RhbCI6MTJ9"}]}`,
		`{"stream":"s","events":[{"type":"T","data":"eyJ0b3RhbCI6MTJ9fQ"}]}`,
		`{"stream":"s","events":[{"type":"T","data":"-_8"}]}`,
		`{"stream":"s","expectedVersion":"3","events":[{"type":"T"}]}`,
		`{"stream":"s","expected_version":3,"events":[{"type":"T","occurred_at":"2024-01-02T03:04:05.123456789+02:00"}]}`,
		`{"stream":"s","expectedVersion":1e2,"events":[]}`,
		`{"stream":"s","expectedState":1,"events":[{"type":"T","metadata":{"k":"v"}}]}`,
		`{"stream":"s","expectedState":"EXPECTED_STATE_NO_STREAM","events":null}`,
		`{"stream":null,"expectedVersion":null}`,
		`{"stream":"s","events":[{"type":"T","schemaVersion":7,"contentType":"application/json"}]}`,
		`{"stream":"s","events":[{"type":"T","data":"%%%"}]}`,
		`{"stream":"s","expectedVersion":"x"}`,
		`[1]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var m rewindv1.AppendRequest
		if protojson.Unmarshal(body, &m) != nil {
			return
		}
		if p := jsonProblem(body, m.ProtoReflect().Descriptor()); p != "" {
			t.Fatalf("protojson accepts %s, but jsonProblem says: %s", body, p)
		}
	})
}
