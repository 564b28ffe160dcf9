// Package api holds the generated ttrpc protocol between the agent and a
// pod's shim; shim.proto beside it is the source.
package api

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative shim.proto
