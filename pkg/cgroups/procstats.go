package cgroups

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcStats counts what the processes of a cgroup hold, as cAdvisor reports it per container
// (container_processes, container_threads, container_file_descriptors, container_sockets).
// The kernel keeps no per-cgroup totals for these: they are summed over /proc/<pid>.
type ProcStats struct {
	Processes       uint64
	Threads         uint64
	FileDescriptors uint64
	Sockets         uint64
}

// procStats sums over pids under procRoot. A process that exits while it is read counts as
// far as it was read: the figures are a sample, not a transaction.
func procStats(procRoot string, pids []int) ProcStats {
	var s ProcStats
	for _, pid := range pids {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		tasks, err := os.ReadDir(filepath.Join(dir, "task"))
		if err != nil {
			continue // gone
		}
		s.Processes++
		s.Threads += uint64(len(tasks))
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		s.FileDescriptors += uint64(len(fds))
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
				s.Sockets++
			}
		}
	}
	return s
}
