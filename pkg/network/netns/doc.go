// Package netns creates a pod's network, IPC and UTS namespaces (optionally owned by a new user
// namespace), pins them by bind mount so they outlive every process, and runs code inside a
// pinned namespace on a locked OS thread.
//
// Namespaces are per thread in Linux while Go moves goroutines between threads, so every
// operation that changes a thread's namespaces locks the goroutine to its thread first. A thread
// whose namespaces cannot be restored is never unlocked: the Go runtime then ends the thread when
// the goroutine returns, instead of handing it to unrelated goroutines.
package netns
