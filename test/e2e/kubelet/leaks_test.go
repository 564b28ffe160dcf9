package kubelet_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const cgroupRoot = "/sys/fs/cgroup"

// snapshot is what existed before the suite, so that the leak check blames
// only what the suite made.
type snapshot struct {
	netns map[string]bool // entries of /run/netns
}

func takeSnapshot() snapshot {
	s := snapshot{netns: map[string]bool{}}
	for _, n := range dirNames("/run/netns") {
		s.netns[n] = true
	}
	return s
}

// finalLeakCheck runs after every test removed its pod, with the kubelet and
// the agent still up: nothing of any pod may remain. It polls for a while
// because the kubelet removes pod cgroups in its housekeeping loop.
func finalLeakCheck() []string {
	for _, m := range dirNames(env.kubelet.manifests) {
		_ = os.Remove(filepath.Join(env.kubelet.manifests, m))
	}
	var leaks []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		leaks = findLeaks()
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(time.Second)
	}
}

func findLeaks() []string {
	var leaks []string
	if pods, err := env.kubelet.pods(); err != nil || len(pods) > 0 {
		leaks = append(leaks, fmt.Sprintf("kubelet /pods lists %d pods (err %v)", len(pods), err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := env.agent.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(resp.Items) > 0 {
		leaks = append(leaks, fmt.Sprintf("berth lists %d sandboxes (err %v)", len(resp.GetItems()), err))
	}
	if resp, err := env.agent.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil || len(resp.Containers) > 0 {
		leaks = append(leaks, fmt.Sprintf("berth lists %d containers (err %v)", len(resp.GetContainers()), err))
	}
	for _, m := range mountsUnder(env.agent.root, env.agent.state, env.kubelet.dir) {
		// The kubelet bind-mounts its root dir onto itself (rshared) by design.
		if m != env.kubelet.rootDir {
			leaks = append(leaks, "mount "+m)
		}
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", "master", podBridge).Output(); len(strings.TrimSpace(string(out))) > 0 {
		leaks = append(leaks, "veths on "+podBridge+": "+strings.TrimSpace(string(out)))
	}
	for _, n := range dirNames("/run/netns") {
		if !env.before.netns[n] {
			leaks = append(leaks, "netns /run/netns/"+n)
		}
	}
	for _, n := range dirNames(filepath.Join(env.agent.state, "netns")) {
		leaks = append(leaks, "pinned namespaces "+filepath.Join(env.agent.state, "netns", n))
	}
	for _, p := range suiteProcesses() {
		leaks = append(leaks, "process "+p)
	}
	for _, c := range podCgroups() {
		leaks = append(leaks, "cgroup "+c)
	}
	return leaks
}

// suiteProcesses are processes other than the agent that name the agent's
// state dir (shims) or live in a kubepods cgroup (containers).
func suiteProcesses() []string {
	var out []string
	agentPid := env.agent.pid()
	for _, e := range dirNames("/proc") {
		pid, err := strconv.Atoi(e)
		if err != nil || pid == agentPid || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e, "cmdline"))
		cg, _ := os.ReadFile(filepath.Join("/proc", e, "cgroup"))
		args := strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")
		if strings.Contains(args, env.agent.state) || strings.Contains(string(cg), "/"+kubepodsRoot()+"/") {
			out = append(out, fmt.Sprintf("%d %s", pid, args))
		}
	}
	return out
}

// podCgroups are the pod cgroups (kubepods/.../pod<uid>, or kubepods.slice/.../*-pod<uid>.slice,
// and below) left in any hierarchy.
func podCgroups() []string {
	var out []string
	for _, h := range hierarchies() {
		root := filepath.Join(h, kubepodsRoot())
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if isPodCgroupName(d.Name()) {
				out = append(out, strings.TrimPrefix(p, cgroupRoot+"/"))
				return filepath.SkipDir
			}
			return nil
		})
	}
	return out
}

// removeKubepods removes the kubepods hierarchy the kubelet creates and never
// removes: through systemd under the systemd driver (its slices are units), else bottom-up in
// every hierarchy; a non-empty cgroup cannot be removed.
func removeKubepods() []error {
	if env.driver == driverSystemd {
		if err := stopKubepodsSlice(); err != nil {
			return []error{err}
		}
		return nil
	}
	var errs []error
	for _, h := range hierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, "kubepods"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && err != unix.ENOENT {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errs
}

// mountsUnder lists the mount points below any of dirs, deepest first.
func mountsUnder(dirs ...string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		for _, d := range dirs {
			if d != "" && (mp == d || strings.HasPrefix(mp, d+"/")) {
				out = append(out, mp)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func dirNames(dir string) []string {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
