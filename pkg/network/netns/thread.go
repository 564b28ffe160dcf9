package netns

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// onThread runs fn on a locked OS thread that is not the process's main thread, and waits.
// When fn returns false (the thread's namespaces are no longer the process's), the goroutine
// ends still locked, so the Go runtime terminates the thread.
//
// The main thread is avoided because the runtime cannot terminate it: a goroutine exiting
// locked to it wedges it instead, which would keep the pod's namespaces alive and make
// /proc/self/ns/* (which shows the main thread) report them for the whole process.
func onThread(fn func() (reusable bool)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			if fn() {
				runtime.UnlockOSThread()
			}
			return
		}
		// Holding the main thread here keeps the worker below off it.
		inner := make(chan struct{})
		go func() {
			defer close(inner)
			runtime.LockOSThread()
			if fn() {
				runtime.UnlockOSThread()
			}
		}()
		<-inner
		runtime.UnlockOSThread()
	}()
	<-done
}
