package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/shim"
)

// crictlCmd is crictl against agent a, with no config file of the host's in the way.
func crictlCmd(ctx context.Context, a *agent, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "crictl", append([]string{"--runtime-endpoint", "unix://" + a.sock, "--image-endpoint", "unix://" + a.sock, "--timeout", "60s"}, args...)...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	// Its own group, so the test can kill it and everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func needCrictl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("crictl"); err != nil {
		t.Fatal("crictl is not installed: run `make deps`")
	}
}

// withPodInit gives the pod one PID namespace whose init reaps orphans, as the kubelet's
// shareProcessNamespace does: killed exec descendants must not linger as zombies.
func withPodInit() podOption { return withPodPID(runtimeapi.NamespaceMode_POD) }

func withStdin(once bool) ctrOption {
	return func(c *runtimeapi.ContainerConfig) { c.Stdin, c.StdinOnce = true, once }
}

func withTty() ctrOption { return func(c *runtimeapi.ContainerConfig) { c.Tty = true } }

// sleeper is a running container doing nothing, in a pod with a reaping init.
func sleeper(t *testing.T, a *agent) (pod, string) {
	t.Helper()
	p := runPod(t, a, podConfig(t, "execpod", withPodInit()))
	id := runContainer(t, a, p, ctrConfig("sleeper", env.images.busybox, withCommand("sleep", "1000")))
	return p, id
}

// hostProc is a process seen from the host.
type hostProc struct {
	pid     string
	cmdline string // arguments joined by spaces
	state   string // R, S, Z...
}

// procsOf lists the host's processes whose cgroup path names the container.
func procsOf(t *testing.T, containerID string) []hostProc {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var out []hostProc
	for _, d := range dirs {
		cg, err := os.ReadFile(filepath.Join(d, "cgroup"))
		if err != nil || !bytes.Contains(cg, []byte(containerID)) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		st, _ := os.ReadFile(filepath.Join(d, "stat"))
		p := hostProc{pid: filepath.Base(d), cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))}
		// stat is "pid (comm) S ...": the state follows the last ')'.
		if i := bytes.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) {
			p.state = string(st[i+2])
		}
		out = append(out, p)
	}
	return out
}

// waitNoProc waits until no process of the container matches cmdline and none is a zombie.
func waitNoProc(t *testing.T, containerID, cmdline string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var left []hostProc
		for _, p := range procsOf(t, containerID) {
			if p.cmdline == cmdline || p.state == "Z" {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the container still has %+v", timeout, left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitProc(t *testing.T, containerID, cmdline string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, p := range procsOf(t, containerID) {
			if p.cmdline == cmdline {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in container %s after %s", cmdline, containerID, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shimIdle waits until the pod's shim holds no exec or attach session and no exec'd
// process: a client that left must not leave one behind.
func shimIdle(t *testing.T, a *agent, podID string) {
	t.Helper()
	ctx := ctxT(t)
	c, err := shim.Connect(ctx, filepath.Join(a.state, "shims", podID))
	if err != nil {
		t.Fatalf("connect to the pod's shim: %v", err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := c.Debug(ctx)
		if err != nil {
			t.Fatalf("shim debug: %v", err)
		}
		if d.Sessions == 0 && d.Execs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shim still has %+v 10s after the client left", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestExecSync(t *testing.T) {
	a := env.shared
	_, id := sleeper(t, a)
	tests := []struct {
		name             string
		cmd              []string
		wantOut, wantErr string
		wantCode         int32
	}{
		{name: "output and exit code", cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, wantOut: "out\n", wantErr: "err\n", wantCode: 3},
		{name: "success", cmd: []string{"echo", "hello"}, wantOut: "hello\n"},
		{name: "runs in the container", cmd: []string{"hostname"}, wantOut: "execpod\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: tt.cmd, Timeout: 30})
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.Stdout) != tt.wantOut || string(resp.Stderr) != tt.wantErr || resp.ExitCode != tt.wantCode {
				t.Fatalf("got stdout %q stderr %q code %d, want %q %q %d", resp.Stdout, resp.Stderr, resp.ExitCode, tt.wantOut, tt.wantErr, tt.wantCode)
			}
		})
	}
}

// A command printing more than one gRPC message may carry still gets its answer, at the
// kubelet's 16 MiB client limit: the start of its output, a note saying what was dropped, its
// exit code.
func TestExecSyncHugeOutput(t *testing.T) {
	a := env.shared
	_, id := sleeper(t, a)
	resp, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{
		ContainerId: id, Cmd: []string{"sh", "-c", "head -c 40000000 /dev/zero; echo done >&2; exit 7"}, Timeout: 60,
	}, grpc.MaxCallRecvMsgSize(16<<20))
	if err != nil {
		t.Fatalf("ExecSync of 40 MB of output: %v", err)
	}
	if n := len(resp.Stdout); n < 7<<20 || n > 8<<20 || resp.ExitCode != 7 {
		t.Errorf("stdout %d bytes, exit code %d; want 7-8 MiB and 7", n, resp.ExitCode)
	}
	if !strings.HasPrefix(string(resp.Stderr), "done\n") || !strings.Contains(string(resp.Stderr), "stdout truncated") {
		t.Errorf("stderr = %q, want the command's own and a truncation note", resp.Stderr)
	}
}

// critest's "runtime should support execSync with timeout", plus what it does not check:
// the output so far comes back and the whole process tree is gone.
func TestExecSyncTimeoutKillsTree(t *testing.T) {
	a := env.shared
	_, id := sleeper(t, a)
	start := time.Now()
	resp, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{
		ContainerId: id, Cmd: []string{"sh", "-c", "echo started; sleep 100 & sleep 100"}, Timeout: 1,
	})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("ExecSync with a timeout: %v (want a response with the output so far)", err)
	}
	if took > 5*time.Second {
		t.Fatalf("ExecSync with a 1s timeout took %s", took)
	}
	if resp.ExitCode == 0 || string(resp.Stdout) != "started\n" || !strings.Contains(string(resp.Stderr), "timed out") {
		t.Fatalf("timed-out ExecSync = stdout %q stderr %q code %d; want the output so far, a note and a failure", resp.Stdout, resp.Stderr, resp.ExitCode)
	}
	waitNoProc(t, id, "sleep 100", 5*time.Second)
	// What critest checks: the container sees no trace of it either.
	ps, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"ps", "-o", "args"}, Timeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ps.Stdout), "sleep 100\n") {
		t.Fatalf("ps in the container still shows the timed-out command:\n%s", ps.Stdout)
	}
}

func TestExecBadInput(t *testing.T) {
	a := env.shared
	p, running := sleeper(t, a)
	stopped := runContainer(t, a, p, ctrConfig("quick", env.images.busybox, withCommand("true")))
	waitExited(t, a, stopped, 30*time.Second)
	ctx := ctxT(t)
	calls := map[string]func(id string) error{
		"ExecSync": func(id string) error {
			_, err := a.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}})
			return err
		},
		"Exec": func(id string) error {
			_, err := a.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
			return err
		},
		"Attach": func(id string) error {
			_, err := a.rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true})
			return err
		},
	}
	for _, tt := range []struct {
		name string
		id   string
		want codes.Code
	}{
		{"stopped container", stopped, codes.FailedPrecondition},
		{"unknown container", "0123456789abcdef", codes.NotFound},
	} {
		for name, call := range calls {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				if err := call(tt.id); status.Code(err) != tt.want {
					t.Fatalf("err = %v, want %s", err, tt.want)
				}
			})
		}
	}
	if _, err := a.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: running}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ExecSync without a command = %v, want InvalidArgument", err)
	}
	if _, err := a.rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: running, Stdin: true, Stdout: true}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Attach with stdin to a container without stdin = %v, want InvalidArgument", err)
	}
	if _, err := a.rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "0123456789abcdef", Port: []int32{80}}); status.Code(err) != codes.NotFound {
		t.Fatalf("PortForward to an unknown pod = %v, want NotFound", err)
	}
}

func TestExecCrictl(t *testing.T) {
	needCrictl(t)
	a := env.shared
	_, id := sleeper(t, a)
	ctx := ctxT(t)

	t.Run("stdin piped", func(t *testing.T) {
		cmd := crictlCmd(ctx, a, "exec", "-i", id, "cat")
		cmd.Stdin = strings.NewReader("hi from stdin\n")
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "hi from stdin\n" {
			t.Fatalf("crictl exec -i cat = %q, %v", out, err)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		// crictl 1.37 exits 1 on any streaming error, but prints the code the server sent.
		out, err := crictlCmd(ctx, a, "exec", id, "sh", "-c", "exit 5").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "exit code 5") {
			t.Fatalf("crictl exec of `exit 5` = %v\n%s\nwant a failure reporting exit code 5", err, out)
		}
	})
	t.Run("tty with resize", func(t *testing.T) {
		// script gives crictl a pty; stty sets its size, which crictl -t sends as the first
		// resize and the exec'd process must see on its own tty.
		line := fmt.Sprintf("stty cols 123 rows 45; crictl --runtime-endpoint unix://%s --timeout 60s exec -i -t %s sh -c 'tty; stty size'", a.sock, id)
		cmd := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
		cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("script crictl exec -it: %v\n%s", err, out)
		}
		s := strings.ReplaceAll(string(out), "\r", "")
		if !strings.Contains(s, "/dev/pts/") || !strings.Contains(s, "45 123") {
			t.Fatalf("exec -it output %q: want a pts and the size 45 123", out)
		}
	})
}

func TestExecClientDisconnect(t *testing.T) {
	needCrictl(t)
	a := env.shared
	p, id := sleeper(t, a)
	for _, tt := range []struct {
		name string
		args []string
		tty  bool
	}{
		{name: "plain", args: []string{"exec", id, "sh", "-c", "sleep 1001; echo done"}},
		{name: "stdin", args: []string{"exec", "-i", id, "sh", "-c", "sleep 1001; cat"}},
		{name: "tty", tty: true, args: []string{"exec", "-i", "-t", id, "sh", "-c", "sleep 1001"}},
	} {
		// spdy is the library's; websocket is v5, served by streaming_v5.go.
		for _, transport := range []string{"spdy", "websocket"} {
			t.Run(transport+"/"+tt.name, func(t *testing.T) {
				args := append([]string{tt.args[0], "--transport", transport}, tt.args[1:]...)
				ctx := ctxT(t)
				var cmd *exec.Cmd
				if tt.tty {
					line := fmt.Sprintf("crictl --runtime-endpoint unix://%s --timeout 60s %s", a.sock, strings.Join(quoteAll(args), " "))
					cmd = exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
					cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
					cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				} else {
					cmd = crictlCmd(ctx, a, args...)
				}
				stdin, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				defer stdin.Close()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
				// crictl alone takes seconds to start under TCG (the VM).
				waitProc(t, id, "sleep 1001", time.Minute)
				// The client vanishes without a word: its TCP connection just closes.
				if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()
				waitNoProc(t, id, "sleep 1001", 10*time.Second)
				shimIdle(t, a, p.id)
			})
		}
	}
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, s := range args {
		out[i] = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return out
}

func TestAttach(t *testing.T) {
	needCrictl(t)
	a := env.shared
	p := runPod(t, a, podConfig(t, "attachpod"))
	cfg := ctrConfig("echoer", env.images.busybox, withCommand("cat"), withStdin(true))
	id := runContainer(t, a, p, cfg)
	ctx := ctxT(t)
	cmd := crictlCmd(ctx, a, "attach", "-i", id)
	cmd.Stdin = strings.NewReader("echo me\n")
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "echo me\n" {
		t.Fatalf("crictl attach -i = %q, %v", out, err)
	}
	// StdinOnce: the attach's stdin EOF closed cat's stdin, so the container ended, and what
	// it echoed is in its log too.
	st := waitExited(t, a, id, 30*time.Second)
	if st.ExitCode != 0 {
		t.Fatalf("container exited %d", st.ExitCode)
	}
	waitLog(t, logPath(p, cfg), "echo me", 5*time.Second)
}

func TestAttachTtyDetach(t *testing.T) {
	needCrictl(t)
	a := env.shared
	p := runPod(t, a, podConfig(t, "attachtty"))
	cfg := ctrConfig("shell", env.images.busybox, withCommand("sh"), withStdin(false), withTty())
	id := runContainer(t, a, p, cfg)
	ctx := ctxT(t)
	line := fmt.Sprintf("crictl --runtime-endpoint unix://%s --timeout 60s attach -i -t %s", a.sock, id)
	cmd := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	got := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		var b strings.Builder
		for {
			s, err := r.ReadString('\n')
			b.WriteString(s)
			if strings.Contains(b.String(), "attached-42") || err != nil {
				got <- b.String()
				return
			}
		}
	}()
	// The shell answers through its tty: arithmetic, so the echo of the typed line is not enough.
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var out string
wait:
	for {
		select {
		case out = <-got:
			break wait
		case <-tick.C:
			fmt.Fprintf(stdin, "echo attached-$((40+2))\n")
		case <-deadline:
			t.Fatal("no answer from the shell through attach -it within 20s")
		}
	}
	if !strings.Contains(out, "attached-42") {
		t.Fatalf("attach -it output %q", out)
	}
	// Leaving an attach only detaches: the container goes on.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	time.Sleep(500 * time.Millisecond)
	if st := containerStatus(t, a, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container is %s after the attach client left", st.State)
	}
	shimIdle(t, a, p.id)
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 80`)

func TestPortForward(t *testing.T) {
	needCrictl(t)
	a := env.shared
	p := runPod(t, a, podConfig(t, "pfpod"))
	web := runContainer(t, a, p, ctrConfig("web", env.images.busybox,
		withShell("mkdir -p /www && echo hello-through-port-forward > /www/index.html && exec httpd -f -p 80 -h /www")))
	// crictl's forwarder (client-go's) gives up on its first refused connection: httpd must be up first.
	waitListening(t, a, web)
	_, local := portForward(t, a, p.id)
	url := "http://127.0.0.1:" + local + "/"
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		// A new connection each time: every one is a new forwarded stream.
		body, err := fetch(client, url)
		if err == nil && body == "hello-through-port-forward\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s through port-forward = %q, %v", url, body, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := range 3 {
		if body, err := fetch(client, url); err != nil || body != "hello-through-port-forward\n" {
			t.Fatalf("request %d through port-forward = %q, %v", i, body, err)
		}
	}
}

func fetch(c *http.Client, url string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Close = true
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("status %s", resp.Status)
	}
	return string(b), err
}

// goroutines reads the agent's goroutine count from its pprof endpoint.
func goroutines(t *testing.T, a *agent) (int, string) {
	t.Helper()
	addr, err := os.ReadFile(filepath.Join(a.state, "metrics.addr"))
	if err != nil {
		t.Fatalf("the agent's metrics address: %v", err)
	}
	body, err := fetch(&http.Client{Timeout: 10 * time.Second}, "http://"+strings.TrimSpace(string(addr))+"/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatalf("goroutine profile: %v", err)
	}
	var n int
	if _, err := fmt.Sscanf(body, "goroutine profile: total %d", &n); err != nil {
		t.Fatalf("goroutine profile starts %.60q: %v", body, err)
	}
	return n, body
}

// portForward starts crictl port-forward to port 80 of the pod and returns the local port.
func portForward(t *testing.T, a *agent, podID string) (*exec.Cmd, string) {
	t.Helper()
	cmd := crictlCmd(ctxT(t), a, "port-forward", podID, ":80")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := forwardingRE.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
		// Keep reading so that crictl never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p := <-port:
		return cmd, p
	case <-time.After(2 * time.Minute): // crictl alone takes seconds to start under TCG (the VM)
		t.Fatal("crictl port-forward did not report its local port within 2 minutes")
		return nil, ""
	}
}

// Sessions that end well, clients that vanish mid-stream, both transports and port-forward:
// afterwards the agent is back to the goroutines it had, and the shim holds nothing.
func TestExecStreamsLeaveNothingBehind(t *testing.T) {
	needCrictl(t)
	a := newAgent(t, agentOptions{config: "[metrics]\naddress = \"127.0.0.1:0\"\n"})
	p := runPod(t, a, podConfig(t, "leakpod", withPodInit()))
	id := runContainer(t, a, p, ctrConfig("sleeper", env.images.busybox, withCommand("sleep", "1000")))
	runContainer(t, a, p, ctrConfig("web", env.images.busybox,
		withShell("mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www")))
	ctx := ctxT(t)
	client := &http.Client{Timeout: 5 * time.Second}

	round := func() {
		t.Helper()
		// Each round gets the usual two minutes of its own: seven rounds under one deadline
		// ran out in the emulated VM while every round was still progressing.
		ctx := ctxT(t)
		cmd := crictlCmd(ctx, a, "exec", "-i", id, "cat")
		cmd.Stdin = strings.NewReader("x\n")
		if out, err := cmd.CombinedOutput(); err != nil || string(out) != "x\n" {
			t.Fatalf("exec = %q, %v", out, err)
		}
		cmd = crictlCmd(ctx, a, "exec", id, "sleep", "1002")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitProc(t, id, "sleep 1002", time.Minute)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		waitNoProc(t, id, "sleep 1002", 10*time.Second)
		if out, _, _ := wsExec(t, a, id, []string{"echo", "ws"}, ""); out != "ws\n" {
			t.Fatalf("exec over websocket printed %q", out)
		}
		// A WebSocket client that leaves mid-exec.
		ws := wsDial(t, a, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sleep", "1003"}, Stdout: true})
		waitProc(t, id, "sleep 1003", time.Minute)
		ws.Close()
		waitNoProc(t, id, "sleep 1003", 10*time.Second)
		pf, port := portForward(t, a, p.id)
		deadline := time.Now().Add(20 * time.Second)
		for {
			body, err := fetch(client, "http://127.0.0.1:"+port+"/")
			if err == nil && body == "hi\n" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("fetch through port-forward = %q, %v", body, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// A client that leaves with a forwarded connection open, mid-request.
		half, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		defer half.Close()
		fmt.Fprint(half, "GET / HTTP/1.0\r\n")
		time.Sleep(300 * time.Millisecond)
		_ = syscall.Kill(-pf.Process.Pid, syscall.SIGKILL)
		_ = pf.Wait()
	}

	round() // warm up: connection pools, lazily started helpers
	time.Sleep(time.Second)
	shimIdle(t, a, p.id)
	sc, err := shim.Connect(ctx, filepath.Join(a.state, "shims", p.id))
	if err != nil {
		t.Fatalf("connect to the pod's shim: %v", err)
	}
	defer sc.Close()
	shimBase := shimSteady(t, sc)
	base, _ := goroutines(t, a)
	// Each round opens five sessions; a leak of one goroutine per round must exceed the
	// slack the agent's own housekeeping (stats collector, gRPC) gets.
	const rounds, slack = 6, 2
	for range rounds {
		round()
	}
	shimSettles(t, sc, shimBase)
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, profile := goroutines(t, a)
		if n <= base+slack {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent has %d goroutines, %d before %d rounds of sessions:\n%s", n, base, rounds, profile)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// shimSteady returns the shim's counters once three readings in a row agree: connections
// closed just before (shimIdle's) end in the shim a moment later.
func shimSteady(t *testing.T, c *shim.Client) shim.DebugInfo {
	t.Helper()
	ctx := ctxT(t)
	var last shim.DebugInfo
	same := 0
	for range 100 {
		d, err := c.Debug(ctx)
		if err != nil {
			t.Fatalf("shim debug: %v", err)
		}
		if d == last {
			same++
		} else {
			last, same = d, 1
		}
		if same == 3 {
			return d
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the shim's counters never settled, last %+v", last)
	return last
}

// shimSettles waits until the shim is back to exactly the goroutines it had at base, with no
// session or exec and no more fds: the shim runs nothing of its own between sessions, so
// any excess that lasts is a leak. Fds may end below base: files of finished execs that only
// the garbage collector closes can be open at base. Asked over the same connection as base,
// whose own goroutines and fd count in both.
func shimSettles(t *testing.T, c *shim.Client, base shim.DebugInfo) {
	t.Helper()
	ctx := ctxT(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, err := c.Debug(ctx)
		if err != nil {
			t.Fatalf("shim debug: %v", err)
		}
		if d.Sessions == 0 && d.Execs == 0 && d.Goroutines == base.Goroutines && d.FDs <= base.FDs {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shim has %+v after the sessions ended, want no session or exec, %d goroutines and at most %d fds",
				d, base.Goroutines, base.FDs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wsDial asks the agent for an exec URL and connects to it over WebSocket, with the
// kubelet's v4 channel protocol (one byte of channel number before each message).
func wsDial(t *testing.T, a *agent, req *runtimeapi.ExecRequest) *websocket.Conn {
	t.Helper()
	resp, err := a.rt.Exec(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := websocket.NewConfig(strings.Replace(resp.Url, "http://", "ws://", 1), "http://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{"v4.channel.k8s.io"}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", resp.Url, err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// wsExec runs cmd over WebSocket and returns its stdout, stderr and the status sent on the
// error channel ("" for success).
func wsExec(t *testing.T, a *agent, id string, cmd []string, stdin string) (string, string, string) {
	t.Helper()
	ws := wsDial(t, a, &runtimeapi.ExecRequest{ContainerId: id, Cmd: cmd, Stdin: stdin != "", Stdout: true, Stderr: true})
	_ = ws.SetDeadline(time.Now().Add(30 * time.Second))
	if stdin != "" {
		if err := websocket.Message.Send(ws, append([]byte{0}, stdin...)); err != nil {
			t.Fatalf("websocket stdin: %v", err)
		}
	}
	var out [4]bytes.Buffer
	for {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			if err != io.EOF {
				t.Fatalf("websocket receive: %v", err)
			}
			break
		}
		if len(msg) > 0 && int(msg[0]) < len(out) {
			out[msg[0]].Write(msg[1:])
		}
	}
	return out[1].String(), out[2].String(), out[3].String()
}

func TestExecWebSocket(t *testing.T) {
	a := env.shared
	_, id := sleeper(t, a)
	stdout, stderr, st := wsExec(t, a, id, []string{"sh", "-c", "read l; echo got $l; echo oops >&2; exit 3"}, "hello\n")
	if stdout != "got hello\n" || stderr != "oops\n" {
		t.Fatalf("websocket exec: stdout %q stderr %q", stdout, stderr)
	}
	var status struct {
		Status, Reason string
		Details        struct {
			Causes []struct{ Reason, Message string }
		}
	}
	if err := json.Unmarshal([]byte(st), &status); err != nil {
		t.Fatalf("status %q: %v", st, err)
	}
	if status.Reason != "NonZeroExitCode" || len(status.Details.Causes) != 1 || status.Details.Causes[0].Message != "3" {
		t.Fatalf("status %s: want NonZeroExitCode with exit code 3", st)
	}
}
