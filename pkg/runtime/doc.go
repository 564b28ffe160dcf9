// Package runtime is the shim's adapter to runc's libcontainer: it creates,
// starts, signals, updates and deletes a pod's containers and records how they exit.
//
// It is the only package importing github.com/opencontainers/runc/libcontainer.
// The process using it must be a child subreaper (see SetSubreaper) and must
// call libcontainer's init hook when re-executed as "init" (see cmd/shim).
package runtime
