package server

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// kernelView is what the node holds for one agent's root and state directories, read
// without the ledger: the doctor compares the two (doctor.go).
type kernelView struct {
	mounts   map[string]bool   // mountpoints strictly below root or state
	shims    map[string]int    // sandbox id -> pid of a berth-shim whose --dir is <state>/shims/<id>
	dirs     []string          // per-object directories below root and state
	cgroups  map[string]bool   // pod cgroup ids found below the default parent in any hierarchy
	ips      map[string]string // host-local reservation file -> sandbox id
	iptables map[string]bool   // sandbox ids named in iptables rule comments
}

// procMounts is read once per view; a var so that tests point it at a fixture is not
// needed: tests make real mounts in a temp dir.
const procMounts = "/proc/self/mountinfo"

func under(p, dir string) bool { return strings.HasPrefix(p, dir+"/") }

// readMounts lists mountpoints strictly below any of dirs. mountinfo escapes spaces and
// other bytes as octal (\040); berth's paths have none, but unescape to compare truly.
func readMounts(dirs ...string) (map[string]bool, error) {
	b, err := os.ReadFile(procMounts)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		for _, d := range dirs {
			if under(mp, d) {
				out[mp] = true
			}
		}
	}
	return out, nil
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readShims finds berth-shim processes serving a directory below shimsDir. The shim is
// started as `berth-shim --id ID --dir DIR ...` and keeps those arguments.
func readShims(shimsDir string) map[string]int {
	out := map[string]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte(shimsDir)) {
			continue
		}
		if isZombie(pid) {
			continue // exited, waiting for its parent: it holds nothing but its pid
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--dir" && filepath.Dir(args[i+1]) == shimsDir {
				out[filepath.Base(args[i+1])] = pid
			}
		}
	}
	return out
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command in parentheses, which may itself hold spaces.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return (err == nil || errors.Is(err, syscall.EPERM)) && !isZombie(pid)
}

// readChildren lists the entries of each dir as full paths; a missing dir is empty.
func readChildren(dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			out = append(out, filepath.Join(d, e.Name()))
		}
	}
	return out
}

// cgroupRoot is where the hierarchies are mounted; the doctor never changes those mounts.
const cgroupRoot = "/sys/fs/cgroup"

// readPodCgroups lists the children of parent (a cgroupfs path such as /berth) in every
// hierarchy, v1 controllers and the unified one alike.
func readPodCgroups(parent string) map[string]bool {
	out := map[string]bool{}
	dirs := []string{filepath.Join(cgroupRoot, parent)}
	hier, _ := os.ReadDir(cgroupRoot)
	for _, h := range hier {
		dirs = append(dirs, filepath.Join(cgroupRoot, h.Name(), parent))
	}
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			// cgroupfs names a pod's cgroup by its id, the systemd driver <parent>-<id>.slice.
			id := e.Name()
			if s, ok := strings.CutSuffix(id, ".slice"); ok {
				id = s[strings.LastIndexByte(s, '-')+1:]
			}
			if e.IsDir() && isSandboxID(id) {
				out[id] = true
			}
		}
	}
	return out
}

// cgroupExists reports whether path exists in any hierarchy.
func cgroupExists(path string) bool {
	if _, err := os.Stat(filepath.Join(cgroupRoot, path)); err == nil {
		return true
	}
	hier, _ := os.ReadDir(cgroupRoot)
	for _, h := range hier {
		if _, err := os.Stat(filepath.Join(cgroupRoot, h.Name(), path)); err == nil {
			return true
		}
	}
	return false
}

var sandboxIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func isSandboxID(s string) bool { return sandboxIDPattern.MatchString(s) }

// readReservations reads host-local's data dir: one dir per network, one file per reserved
// IP holding the container id on its first line (plus lock and last_reserved_ip files).
func readReservations(dataDir string) map[string]string {
	out := map[string]string{}
	for _, netDir := range readChildren(dataDir) {
		for _, f := range readChildren(netDir) {
			base := filepath.Base(f)
			if base == "lock" || strings.HasPrefix(base, "last_reserved_ip") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			line, _, _ := strings.Cut(string(b), "\n")
			out[f] = strings.TrimSpace(line)
		}
	}
	return out
}

// iptablesIDPattern matches the comment CNI plugins (bridge ipMasq, portmap) put on the
// rules of one attachment: `name: "<network>" id: "<container id>"`.
var iptablesIDPattern = regexp.MustCompile(`id: \\?"([0-9a-f]{64})\\?"`)

// readIPTablesIDs lists the sandbox ids named by rules in the nat and filter tables. The
// tables are node-wide: the caller keeps only ids it knows to be its own.
func readIPTablesIDs() map[string]bool {
	out := map[string]bool{}
	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		path, err := exec.LookPath(bin)
		if err != nil {
			continue
		}
		b, err := exec.Command(path).Output()
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			for _, m := range iptablesIDPattern.FindAllStringSubmatch(sc.Text(), -1) {
				out[m[1]] = true
			}
		}
	}
	return out
}
