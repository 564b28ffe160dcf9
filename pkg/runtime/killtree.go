package runtime

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// killTree SIGKILLs pid, its process group and every descendant. The exec'd
// process leads its own session and group (libcontainer's nsexec calls
// setsid), but a child may have left the group, so the tree is also walked
// by parent pid. The tree is stopped first and rescanned until no new
// member shows up: a stopped process cannot fork, and a process killed
// before its children would let them be reparented out of reach.
func killTree(pid int) {
	seen := map[int]bool{}
	for range 10 {
		grew := false
		for _, p := range treeMembers(pid) {
			if !seen[p] {
				seen[p] = true
				grew = true
				_ = unix.Kill(p, unix.SIGSTOP)
			}
		}
		if !grew {
			break
		}
	}
	_ = unix.Kill(-pid, unix.SIGKILL)
	for p := range seen {
		_ = unix.Kill(p, unix.SIGKILL)
	}
}

// treeMembers lists pid, its descendants and the members of its process
// group, from one scan of /proc.
func treeMembers(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pid}
	}
	children := map[int][]int{}
	out := []int{pid}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, pgrp, ok := readPPidPgrp(p)
		if !ok {
			continue
		}
		children[ppid] = append(children[ppid], p)
		if pgrp == pid && p != pid {
			out = append(out, p)
		}
	}
	for queue := []int{pid}; len(queue) > 0; {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// readPPidPgrp parses "pid (comm) state ppid pgrp ..." from /proc/<pid>/stat.
func readPPidPgrp(pid int) (ppid, pgrp int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 3 {
		return 0, 0, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgrp, err2 := strconv.Atoi(string(f[2]))
	return ppid, pgrp, err1 == nil && err2 == nil
}
