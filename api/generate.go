// Package api holds rewind's API definition in protobuf (rewind/v1) and the
// code generated from it. Regenerate after editing a .proto file with
//
//	go generate ./api/...
//
// which lints the schema and runs buf with the protoc-gen-go and
// protoc-gen-connect-go plugins, all declared as tool dependencies in
// go.mod. TestGeneratedCodeIsFresh fails when the committed code is stale.
package api

//go:generate go tool buf lint
//go:generate go tool buf generate
