package storetest

import (
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/rewindhq/rewind"
)

// The model of the linearizability check must reject the anomaly it is
// there for — a conflict reporting a version that a read started after it
// does not see — and accept the same calls when the read comes first.
func TestLinearizabilityModel(t *testing.T) {
	op := func(client int, in linInput, out linOutput, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
	}
	appendV1 := op(0, linInput{kind: linAppend, stream: "s", expected: rewind.Exactly(0), batch: 0, n: 1},
		linOutput{kind: linOK, first: 1, last: 1}, 0, 100)
	conflict := op(1, linInput{kind: linAppend, stream: "s", expected: rewind.Exactly(0), batch: 1, n: 1},
		linOutput{kind: linWEV, actual: 1, exists: true}, 10, 20)
	info := func(call, ret int64) porcupine.Operation {
		return op(2, linInput{kind: linInfo, stream: "s"}, linOutput{kind: linNotFound}, call, ret)
	}
	if porcupine.CheckOperations(linModel, []porcupine.Operation{appendV1, conflict, info(30, 40)}) {
		t.Fatal("a conflict saying version 1, then a read saying the stream does not exist, was found linearizable")
	}
	if !porcupine.CheckOperations(linModel, []porcupine.Operation{appendV1, conflict, info(5, 8)}) {
		t.Fatal("a read saying the stream does not exist, then a conflict saying version 1, was not found linearizable")
	}
	read := op(2, linInput{kind: linRead, stream: "s"}, linOutput{kind: linOK, first: 1, last: 1, batches: "1,"}, 110, 120)
	if porcupine.CheckOperations(linModel, []porcupine.Operation{appendV1, read}) {
		t.Fatal("a read showing another batch at version 1 was found linearizable")
	}
}
