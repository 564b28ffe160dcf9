package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// callTimeout bounds every CRI call: a hung runtime fails the run instead of stalling it.
const callTimeout = 3 * time.Minute

// benchLabel marks every pod the driver makes, so that cleanup finds exactly those.
const benchLabel = "io.berth.benchcompare"

// Runtime is one CRI runtime under test.
type Runtime struct {
	Name     string
	PID      int    // the agent's pid, for its RSS
	State    string // the runtime's state dir: its shims name it on their command line
	Root     string // the runtime's root dir: where its image store lives
	ShimExe  string // base name of its per-pod shim binary
	LogDir   string // pod log directories go under here
	CgroupNS string // cgroupfs parent of its pods, e.g. /berthbench.x/berth

	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	im   runtimeapi.ImageServiceClient
	seq  atomic.Int64 // unique pod and container names
}

func (r *Runtime) dial(sock string) error {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return fmt.Errorf("dial %s at %s: %w", r.Name, sock, err)
	}
	r.conn = conn
	r.rt = runtimeapi.NewRuntimeServiceClient(conn)
	r.im = runtimeapi.NewImageServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		return fmt.Errorf("version of %s: %w", r.Name, err)
	}
	return nil
}

func ctxT() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// podConfig is a pod as a kubelet with the cgroupfs driver would send it: its own cgroup
// parent, a log directory, and either CNI or host networking.
func (r *Runtime) podConfig(hostNet bool) *runtimeapi.PodSandboxConfig {
	n := r.seq.Add(1)
	uid := fmt.Sprintf("%s-%d-%d", r.Name, time.Now().UnixNano(), n)
	netMode, hostname := runtimeapi.NamespaceMode_POD, "bench"
	if hostNet {
		// A host-network pod shares the node's UTS namespace: it has no hostname of its own
		// to set (runc refuses to set one there).
		netMode, hostname = runtimeapi.NamespaceMode_NODE, ""
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "bench-" + strconv.FormatInt(n, 10), Namespace: "bench", Uid: uid},
		Hostname:     hostname,
		LogDirectory: filepath.Join(r.LogDir, uid),
		Labels:       map[string]string{benchLabel: "1"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    r.CgroupNS + "/pod" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: netMode}},
		},
	}
}

// Pod is a running sandbox and the config it was made with.
type Pod struct {
	ID  string
	Cfg *runtimeapi.PodSandboxConfig
}

func (r *Runtime) runPod(hostNet bool) (Pod, error) {
	cfg := r.podConfig(hostNet)
	ctx, cancel := ctxT()
	defer cancel()
	resp, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return Pod{}, fmt.Errorf("%s: run pod %s: %w", r.Name, cfg.Metadata.Name, err)
	}
	return Pod{ID: resp.PodSandboxId, Cfg: cfg}, nil
}

func (r *Runtime) stopPod(id string) error {
	ctx, cancel := ctxT()
	defer cancel()
	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("%s: stop pod %s: %w", r.Name, id, err)
	}
	return nil
}

func (r *Runtime) removePod(id string) error {
	ctx, cancel := ctxT()
	defer cancel()
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("%s: remove pod %s: %w", r.Name, id, err)
	}
	return nil
}

// Shell scripts of the test containers (busybox sh as pid 1 of the container).
const (
	// ignoreTerm keeps running through SIGTERM: only SIGKILL stops it.
	ignoreTerm = "trap '' TERM; while :; do sleep 1; done"
	// exitOnTerm exits 0 as soon as SIGTERM arrives (the wait is interrupted by the trap).
	exitOnTerm = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"
)

func (r *Runtime) createContainer(p Pod, script string) (string, error) {
	n := r.seq.Add(1)
	name := "c" + strconv.FormatInt(n, 10)
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: BusyboxRef},
		Command:  []string{"sh", "-c", script},
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
	ctx, cancel := ctxT()
	defer cancel()
	resp, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.ID, Config: cfg, SandboxConfig: p.Cfg})
	if err != nil {
		return "", fmt.Errorf("%s: create container %s in pod %s: %w", r.Name, name, p.ID, err)
	}
	return resp.ContainerId, nil
}

func (r *Runtime) startContainer(id string) error {
	ctx, cancel := ctxT()
	defer cancel()
	if _, err := r.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("%s: start container %s: %w", r.Name, id, err)
	}
	return nil
}

func (r *Runtime) stopContainer(id string, timeout int64) error {
	ctx, cancel := ctxT()
	defer cancel()
	if _, err := r.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: timeout}); err != nil {
		return fmt.Errorf("%s: stop container %s: %w", r.Name, id, err)
	}
	return nil
}

func (r *Runtime) execSync(id string, cmd ...string) error {
	ctx, cancel := ctxT()
	defer cancel()
	resp, err := r.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		return fmt.Errorf("%s: exec in %s: %w", r.Name, id, err)
	}
	if resp.ExitCode != 0 {
		return fmt.Errorf("%s: exec %v in %s: exit code %d: %s", r.Name, cmd, id, resp.ExitCode, resp.Stderr)
	}
	return nil
}

func (r *Runtime) pull(ref string) error {
	ctx, cancel := ctxT()
	defer cancel()
	if _, err := r.im.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return fmt.Errorf("%s: pull %s: %w", r.Name, ref, err)
	}
	return nil
}

func (r *Runtime) removeImage(ref string) error {
	ctx, cancel := ctxT()
	defer cancel()
	if _, err := r.im.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return fmt.Errorf("%s: remove image %s: %w", r.Name, ref, err)
	}
	return nil
}

// cleanup stops and removes every pod the driver made on this runtime (all of them, even
// after a failed step), so the runtimes can be stopped with nothing running.
func (r *Runtime) cleanup() error {
	ctx, cancel := ctxT()
	defer cancel()
	resp, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{benchLabel: "1"}}})
	if err != nil {
		return fmt.Errorf("%s: list pods: %w", r.Name, err)
	}
	var first error
	for _, p := range resp.Items {
		if err := r.stopPod(p.Id); err != nil && first == nil {
			first = err
		}
		if err := r.removePod(p.Id); err != nil && first == nil {
			first = err
		}
	}
	return first
}
