package cluster_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// transports are kubectl's two streaming protocols: WebSocket (the default; the API server
// translates it to SPDY toward the kubelet) and SPDY end to end.
var transports = []struct {
	name string
	env  []string
}{
	{"websocket", nil},
	{"spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false", "KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}},
}

// TestExec: kubectl exec with stdin and an exit code, and with a terminal of a given size.
func TestExec(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	runPod(t, ns, "bb", busybox, "sleep 3600")
	for _, tr := range transports {
		t.Run(tr.name+"/stdin", func(t *testing.T) {
			out, err := kubectlEnv(t, tr.env, "from stdin\n", "-n", ns, "exec", "-i", "bb", "--",
				"sh", "-c", "cat; hostname; exit 3")
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("want exit code 3, got %v", err)
			}
			if out != "from stdin\nbb\n" {
				t.Fatalf("exec output %q, want stdin echoed and the hostname", out)
			}
		})
		t.Run(tr.name+"/tty", func(t *testing.T) {
			out := execTTY(t, tr.env, "-n", ns, "exec", "-it", "bb", "--", "sh", "-c", "tty; stty size; echo end")
			t.Logf("tty output: %q", out)
			if !strings.Contains(out, "/dev/pts/") {
				t.Errorf("tty output %q: the command has no terminal", out)
			}
			if !strings.Contains(out, "40 100") {
				t.Errorf("tty output %q: want the client's size 40 100 from stty size", out)
			}
			if !strings.Contains(out, "end") {
				t.Errorf("tty output %q: the command did not finish", out)
			}
		})
	}
}

// execTTY runs kubectl on a pseudo-terminal 40x100 (kubectl -t wants one) and returns what
// it printed.
func execTTY(t *testing.T, extraEnv []string, args ...string) string {
	t.Helper()
	return onTTY(t, extraEnv, "", "", args...)
}

// onTTY runs kubectl on a pseudo-terminal 40x100, types input once its output contains after
// (nothing when after is empty), and returns what it printed once it exited.
func onTTY(t *testing.T, extraEnv []string, after, input string, args ...string) string {
	t.Helper()
	master, slave, err := openPTY(40, 100)
	if err != nil {
		t.Fatalf("open a pty: %v", err)
	}
	defer master.Close()
	cmd := exec.Command(env.kubectl, args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+env.kubeconfig, "TERM=xterm"), extraEnv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		slave.Close()
		t.Fatalf("start kubectl: %v", err)
	}
	slave.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	var out strings.Builder
	typed := after == ""
	buf := make([]byte, 4096)
	for {
		// Reading the master fails with EIO once the last holder of the slave is gone.
		n, err := master.Read(buf)
		out.Write(buf[:n])
		if !typed && strings.Contains(out.String(), after) {
			// The pty holds what is typed until kubectl reads it, once it is attached.
			if _, werr := io.WriteString(master, input); werr != nil {
				t.Errorf("type into kubectl's terminal: %v", werr)
			}
			typed = true
		}
		if err != nil {
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// openPTY opens a pseudo-terminal pair of rows x cols.
func openPTY(rows, cols uint16) (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		master.Close()
		slave.Close()
		return nil, nil, fmt.Errorf("set pty size: %w", err)
	}
	return master, slave, nil
}
