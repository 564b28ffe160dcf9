package runtime

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The pod init gets its seccomp filter (OCI LinuxSeccomp as JSON) in podInitSeccompEnv and
// reports on the fd named by podInitSeccompReportEnv: "ok", or "error <text>".
const (
	podInitSeccompEnv       = "BERTH_POD_INIT_SECCOMP"
	podInitSeccompReportEnv = "BERTH_POD_INIT_SECCOMP_REPORT_FD"
	// maxPodSeccompEnv stays under the kernel's MAX_ARG_STRLEN (32 pages) for one
	// environment string; the default profile is about a tenth of it.
	maxPodSeccompEnv = 120 << 10
)

// podInitSeccomp hands a seccomp filter to the init a command is about to start, and reads
// the init's report once it started. A nil *podInitSeccomp (no filter) does nothing.
type podInitSeccomp struct {
	r, w *os.File
}

func newPodInitSeccomp(cmd *exec.Cmd, filter *specs.LinuxSeccomp) (*podInitSeccomp, error) {
	if filter == nil {
		return nil, nil
	}
	// Converted here too, so that a filter the library cannot take fails the request
	// rather than the init.
	if _, err := podSeccompConfig(filter); err != nil {
		return nil, err
	}
	b, err := json.Marshal(filter)
	if err != nil {
		return nil, err
	}
	if len(b) > maxPodSeccompEnv {
		return nil, fmt.Errorf("pod seccomp filter is %d bytes, more than %d: %w", len(b), maxPodSeccompEnv, errdefs.ErrInvalidArgument)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	fd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, w)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, podInitSeccompEnv+"="+string(b), podInitSeccompReportEnv+"="+strconv.Itoa(fd))
	return &podInitSeccomp{r: r, w: w}, nil
}

// closeWrite drops the shim's copy of the write end, so the read ends when the init's does.
func (p *podInitSeccomp) closeWrite() {
	if p != nil {
		p.w.Close()
	}
}

// await reads the init's report. It fails when the init could not load the filter, died
// before reporting, or did not report in time.
func (p *podInitSeccomp) await() error {
	if p == nil {
		return nil
	}
	defer p.r.Close()
	p.closeWrite()
	_ = p.r.SetReadDeadline(time.Now().Add(podInitReportTimeout))
	b, err := io.ReadAll(p.r)
	line := strings.TrimSpace(string(b))
	switch {
	case line == "ok":
		return nil
	case strings.HasPrefix(line, "error "):
		return fmt.Errorf("pod init seccomp filter: %s: %w", strings.TrimPrefix(line, "error "), errdefs.ErrInvalidArgument)
	case err != nil:
		return fmt.Errorf("pod init seccomp report: %w", err)
	}
	return fmt.Errorf("pod init seccomp report: unexpected %q", line)
}

// podSeccompConfig converts the OCI filter for libcontainer. Notify actions are refused:
// nobody would receive the listener fd of the pod init.
func podSeccompConfig(filter *specs.LinuxSeccomp) (*configs.Seccomp, error) {
	cfg, err := specconv.SetupSeccomp(filter)
	if err != nil {
		return nil, fmt.Errorf("pod seccomp filter: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if cfg == nil {
		return nil, fmt.Errorf("pod seccomp filter is empty: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.DefaultAction == configs.Notify {
		return nil, fmt.Errorf("pod seccomp filter: notify actions are not supported for the pod init: %w", errdefs.ErrInvalidArgument)
	}
	for _, c := range cfg.Syscalls {
		if c.Action == configs.Notify {
			return nil, fmt.Errorf("pod seccomp filter: notify action on %s is not supported for the pod init: %w", c.Name, errdefs.ErrInvalidArgument)
		}
	}
	return cfg, nil
}

// applyPodInitSeccomp runs in the pod init when the shim handed it a filter: it loads the
// filter on this thread and re-executes the init from it. A seccomp filter binds the thread
// that loads it (libcontainer does not synchronise threads, as runc's init execs right
// after); execve keeps the caller's filter and leaves a single thread, so every thread of
// the re-executed init, and every process it could start, runs under the filter. The
// re-executed init gets only the report fd in its environment (it has joined its cgroup
// already) and reports "ok" itself (reportPodInitReady), so the shim answers only once the
// filtered init runs. /proc/self/exe is executed rather than the binary's path: in a user
// namespace the init may not search the directories of that path.
// It returns only on failure, after reporting it.
func applyPodInitSeccomp(filterJSON string) error {
	fd := reportFD()
	err := loadPodSeccomp(filterJSON)
	if err == nil {
		var env []string
		if fd >= 0 {
			env = []string{podInitSeccompReportEnv + "=" + strconv.Itoa(fd)}
		}
		err = fmt.Errorf("re-execute the pod init: %w", unix.Exec("/proc/self/exe", os.Args, env))
	}
	if fd >= 0 {
		report := os.NewFile(uintptr(fd), "seccomp-report")
		fmt.Fprintf(report, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		report.Close()
	}
	return err
}

// reportPodInitReady tells the shim the filtered init runs, when it was asked to.
func reportPodInitReady() {
	fd := reportFD()
	if fd < 0 {
		return
	}
	report := os.NewFile(uintptr(fd), "seccomp-report")
	fmt.Fprintln(report, "ok")
	report.Close()
}

func loadPodSeccomp(filterJSON string) error {
	var filter specs.LinuxSeccomp
	if err := json.Unmarshal([]byte(filterJSON), &filter); err != nil {
		return fmt.Errorf("decode seccomp filter: %w", err)
	}
	cfg, err := podSeccompConfig(&filter)
	if err != nil {
		return err
	}
	// The thread that loads the filter is the one that must exec.
	goruntime.LockOSThread()
	fd, err := seccomp.InitSeccomp(cfg)
	if err != nil {
		return fmt.Errorf("load seccomp filter: %w", err)
	}
	if fd >= 0 {
		unix.Close(fd)
	}
	return nil
}

// reportFD is the report fd the shim named, -1 for none.
func reportFD() int {
	fd, err := strconv.Atoi(os.Getenv(podInitSeccompReportEnv))
	if err != nil || fd < 3 {
		return -1
	}
	return fd
}
