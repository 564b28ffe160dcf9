// Package server serves the CRI v1 RuntimeService and ImageService over gRPC.
// One file per RPC; errors are classified at their source and turned into gRPC codes in errors.go.
package server
