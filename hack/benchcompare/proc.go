package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// rssMiB is VmRSS of pid from /proc/<pid>/status.
func rssMiB(pid int) (float64, error) {
	kb, err := procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	return kb / 1024, nil
}

// pssMiB is the Pss of pid from /proc/<pid>/smaps_rollup: its share of every page it maps,
// so that pages shared between the pods' shims are counted once over all of them.
func pssMiB(pid int) (float64, error) {
	kb, err := procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
	if err != nil {
		return 0, fmt.Errorf("pss of %d: %w", pid, err)
	}
	return kb / 1024, nil
}

// procField reads "<key> <n> kB" from a /proc file.
func procField(path, key string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == key {
			return strconv.ParseFloat(fields[1], 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in %s", key, path)
}

// diskUsage is the space the regular files under dir take, in bytes (files vanishing
// meanwhile are skipped).
func diskUsage(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	return n, nil
}

type proc struct {
	pid, ppid int
	exe       string // base name of the executable
	cmdline   []byte
}

// processes lists every process with its parent, executable and command line.
func processes() (map[int]proc, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	out := make(map[int]proc, len(dirs))
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// The comm field may hold spaces and parentheses: the ppid follows the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		exe, _ := os.Readlink(d + "/exe")
		cmd, _ := os.ReadFile(d + "/cmdline")
		out[pid] = proc{pid: pid, ppid: ppid, exe: filepath.Base(exe), cmdline: cmd}
	}
	return out, nil
}

type podMemory struct {
	shim, other float64        // MiB of PSS
	count       int            // processes
	exes        map[string]int // processes per executable, for the log
}

// podProcesses sums the PSS of the runtime's shims (its shim binary, naming its state dir on
// the command line) and of every descendant of them: with sandbox-only pods those are the
// pause processes or pod inits.
func podProcesses(r *Runtime) (podMemory, error) {
	procs, err := processes()
	if err != nil {
		return podMemory{}, err
	}
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	m := podMemory{exes: map[string]int{}}
	var walk func(pid int, shim bool) error
	walk = func(pid int, shim bool) error {
		pss, err := pssMiB(pid)
		if err != nil {
			return err
		}
		m.count++
		m.exes[procs[pid].exe]++
		if shim {
			m.shim += pss
		} else {
			m.other += pss
		}
		for _, c := range children[pid] {
			if err := walk(c, false); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range procs {
		if p.pid == r.PID || p.exe != r.ShimExe || !bytes.Contains(p.cmdline, []byte(r.State)) {
			continue
		}
		// A shim whose parent is a shim of ours is walked from its parent.
		if pp, ok := procs[p.ppid]; ok && pp.exe == r.ShimExe {
			continue
		}
		if err := walk(p.pid, true); err != nil {
			return m, err
		}
	}
	if m.count == 0 {
		return m, fmt.Errorf("%s: no %s process naming %s", r.Name, r.ShimExe, r.State)
	}
	return m, nil
}
