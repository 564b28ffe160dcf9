package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/cri/spec"
)

var errInjected = errors.New("injected failure")

// fakeShims hands out one fakeShim per shim directory and reconnects to it by directory.
type fakeShims struct {
	mu       sync.Mutex
	shims    map[string]*fakeShim // by dir
	started  []ShimStartRequest
	startErr error
	podInit  error
	connErr  error
	// slowStart, when set, holds Start until released.
	slowStart *slowStep
}

// slowStep is a step that takes as long as the test wants: it says when it was entered and
// waits for release.
type slowStep struct{ entered, release chan struct{} }

func newSlowStep() *slowStep {
	return &slowStep{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (s *slowStep) wait() {
	if s == nil {
		return
	}
	s.entered <- struct{}{}
	<-s.release
}

func newFakeShims() *fakeShims { return &fakeShims{shims: map[string]*fakeShim{}} }

func (f *fakeShims) Start(ctx context.Context, r ShimStartRequest) (ShimClient, error) {
	dir := r.Dir
	f.slowStart.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return nil, f.startErr
	}
	f.started = append(f.started, r)
	sh := &fakeShim{dir: dir, containers: map[string]*fakeCtr{}, podInitErr: f.podInit}
	f.shims[dir] = sh
	return sh, nil
}

func (f *fakeShims) Connect(ctx context.Context, dir string) (ShimClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.connErr != nil {
		return nil, f.connErr
	}
	sh, ok := f.shims[dir]
	if !ok || sh.isShutdown() {
		return nil, fmt.Errorf("connect %s: %w", dir, errdefs.ErrUnavailable)
	}
	return sh, nil
}

func (f *fakeShims) get(dir string) *fakeShim {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shims[dir]
}

// dumps counts the Checkpoint requests of every shim.
func (f *fakeShims) dumps() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, sh := range f.shims {
		sh.mu.Lock()
		n += len(sh.checkpoints)
		sh.mu.Unlock()
	}
	return n
}

func (f *fakeShims) running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, sh := range f.shims {
		if !sh.isShutdown() {
			n++
		}
	}
	return n
}

type fakeCtr struct {
	st          ShimState
	done        chan struct{}
	ignoreTerm  bool
	killSignals []syscall.Signal
}

// fakeShim keeps containers in memory; a container "exits" when exit is called or when it
// gets a signal it does not ignore.
type fakeShim struct {
	dir        string
	mu         sync.Mutex
	containers map[string]*fakeCtr
	shutdown   bool
	podInitErr error
	slowCreate *slowStep // when set, holds Create until released
	nextPid    int
	// podInitCgroup is the cgroup the pod init was asked to join.
	podInitCgroup string
	// checkpoints are the Checkpoint requests; checkpointErr fails them.
	checkpoints   []ShimCheckpointRequest
	checkpointErr error
	// onCheckpoint, when set, runs at each Checkpoint (before checkpointErr applies).
	onCheckpoint func(ShimCheckpointRequest)
	// creates are the Create requests.
	creates []ShimCreateRequest
	// podInitSeccomp is the seccomp filter the pod init was asked to load.
	podInitSeccomp *specs.LinuxSeccomp
	// waitsCut counts the Waits that the caller's context ended before the exit: a real
	// shim's late answer to those lands on a closed ttrpc stream.
	waitsCut int
}

func (f *fakeShim) isShutdown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shutdown
}

func (f *fakeShim) ctr(id string) (*fakeCtr, error) {
	c, ok := f.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (f *fakeShim) Create(ctx context.Context, req ShimCreateRequest) (int, error) {
	f.slowCreate.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := os.Stat(filepath.Join(req.Bundle, "config.json")); err != nil {
		return 0, fmt.Errorf("bundle: %w", err)
	}
	f.creates = append(f.creates, req)
	f.nextPid++
	pid := 1000 + f.nextPid
	f.containers[req.ID] = &fakeCtr{st: ShimState{ID: req.ID, Status: shimCreated, Pid: pid, CreatedAt: time.Now()}, done: make(chan struct{})}
	return pid, nil
}

func (f *fakeShim) Start(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.ctr(id)
	if err != nil {
		return err
	}
	c.st.Status, c.st.StartedAt = shimRunning, time.Now()
	return nil
}

// exit makes a container exit with code.
func (f *fakeShim) exit(id string, code int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exitLocked(f.containers[id], code)
}

func (f *fakeShim) exitLocked(c *fakeCtr, code int32) {
	if c == nil || c.st.Status == shimStopped {
		return
	}
	c.st.Status, c.st.ExitCode, c.st.FinishedAt, c.st.Pid = shimStopped, code, time.Now(), 0
	close(c.done)
}

func (f *fakeShim) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.ctr(id)
	if err != nil {
		return err
	}
	c.killSignals = append(c.killSignals, sig)
	if sig == syscall.SIGKILL || !c.ignoreTerm {
		f.exitLocked(c, 128+int32(sig))
	}
	return nil
}

func (f *fakeShim) Wait(ctx context.Context, id string) (ShimState, error) {
	f.mu.Lock()
	c, err := f.ctr(id)
	f.mu.Unlock()
	if err != nil {
		return ShimState{}, err
	}
	select {
	case <-c.done:
		return f.State(ctx, id)
	case <-ctx.Done():
		f.mu.Lock()
		f.waitsCut++
		f.mu.Unlock()
		return ShimState{}, ctx.Err()
	}
}

func (f *fakeShim) State(ctx context.Context, id string) (ShimState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.ctr(id)
	if err != nil {
		return ShimState{}, err
	}
	return c.st, nil
}

func (f *fakeShim) List(ctx context.Context) ([]ShimState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ShimState
	for _, c := range f.containers {
		out = append(out, c.st)
	}
	return out, nil
}

func (f *fakeShim) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.ctr(id)
	return err
}

func (f *fakeShim) ReopenLog(ctx context.Context, id string) error { return nil }

func (f *fakeShim) Delete(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return nil
	}
	if c.st.Status == shimRunning {
		return fmt.Errorf("delete running %s: %w", id, errdefs.ErrFailedPrecondition)
	}
	delete(f.containers, id)
	return nil
}

func (f *fakeShim) StartPodInit(ctx context.Context, req ShimPodInitRequest) (int, error) {
	if f.podInitErr != nil {
		return 0, f.podInitErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.podInitCgroup = req.CgroupPath
	f.podInitSeccomp = req.Seccomp
	return 999, nil
}

func (f *fakeShim) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, c := range f.containers {
		f.exitLocked(c, 137)
		delete(f.containers, id)
	}
	f.shutdown = true
	return nil
}

func (f *fakeShim) Close() error { return nil }

// Checkpoint writes one fake CRIU image and remembers the request; checkpointErr fails it.
func (f *fakeShim) Checkpoint(ctx context.Context, req ShimCheckpointRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.ctr(req.ID)
	if err != nil {
		return err
	}
	if c.st.Status != shimRunning {
		return fmt.Errorf("checkpoint %s: not running: %w", req.ID, errdefs.ErrFailedPrecondition)
	}
	f.checkpoints = append(f.checkpoints, req)
	if f.onCheckpoint != nil {
		f.onCheckpoint(req)
	}
	if f.checkpointErr != nil {
		return f.checkpointErr
	}
	if err := os.MkdirAll(req.ImagesDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(req.ImagesDir, "pages-1.img"), []byte("memory of "+req.ID), 0o600)
}

// fakeNamespaces pins namespaces as plain files.
type fakeNamespaces struct {
	mu        sync.Mutex
	createErr error
	doErr     error
	entered   []string
}

func (f *fakeNamespaces) Create(opts NamespaceOptions) (NamespacePaths, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return NamespacePaths{}, err
	}
	var p NamespacePaths
	for kind, want := range map[string]*string{"net": &p.Net, "ipc": &p.IPC, "uts": &p.UTS} {
		if (kind == "net" && !opts.Net) || (kind == "ipc" && !opts.IPC) || (kind == "uts" && !opts.UTS) {
			continue
		}
		*want = filepath.Join(opts.Dir, kind)
		if err := os.WriteFile(*want, nil, 0o644); err != nil {
			return NamespacePaths{}, err
		}
	}
	if f.createErr != nil {
		return NamespacePaths{}, f.createErr
	}
	return p, nil
}

func (f *fakeNamespaces) Unpin(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func (f *fakeNamespaces) Do(path string, fn func() error) error {
	f.mu.Lock()
	f.entered = append(f.entered, path)
	err := f.doErr
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return fn()
}

// fakeCgroups keeps pod cgroups in a set and the resources last set on each.
type fakeCgroups struct {
	mu        sync.Mutex
	paths     map[string]bool
	ensureErr error
	// scopes names container cgroups as the systemd driver does (units of their own).
	scopes   bool
	set      map[string]*runtimeapi.LinuxContainerResources
	setErr   error // returned (once) by the next SetPod, which then writes nothing
	setCalls int
	// frozen are the container cgroups frozen now; freezeErr fails freezing the path.
	frozen    map[string]bool
	freezeErr map[string]error
}

func (f *fakeCgroups) Freeze(path string, frozen bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.freezeErr[path]; err != nil && frozen {
		return err
	}
	if f.frozen == nil {
		f.frozen = map[string]bool{}
	}
	if frozen {
		f.frozen[path] = true
	} else {
		delete(f.frozen, path)
	}
	return nil
}

func (f *fakeCgroups) frozenCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.frozen)
}

func (f *fakeCgroups) SetPod(path string, r *runtimeapi.LinuxContainerResources) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setCalls++
	if err := f.setErr; err != nil {
		f.setErr = nil
		return err
	}
	if !f.paths[path] {
		return fmt.Errorf("set pod cgroup %q: %w", path, errdefs.ErrNotFound)
	}
	if f.set == nil {
		f.set = map[string]*runtimeapi.LinuxContainerResources{}
	}
	f.set[path] = r
	return nil
}

func (f *fakeCgroups) podSet(path string) *runtimeapi.LinuxContainerResources {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set[path]
}

func (f *fakeCgroups) NormalizeParent(parent string) (string, error) {
	if parent == "" {
		return "/berth", nil
	}
	return parent, nil
}

func (f *fakeCgroups) EnsurePod(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paths[path] = true
	return f.ensureErr
}

func (f *fakeCgroups) PodPath(parent, id string) string { return parent + "/" + id }

func (f *fakeCgroups) PodInitCgroup(pod, _ string) CgroupRef {
	return CgroupRef{Path: pod + "/pod-init", Runtime: pod + "/pod-init"}
}

func (f *fakeCgroups) EnsureLeaf(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paths[path] = true
	return f.ensureErr
}

func (f *fakeCgroups) Remove(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.paths, path)
	return nil
}

func (f *fakeCgroups) ContainerCgroup(pod, id string) CgroupRef {
	if f.scopes {
		return CgroupRef{Path: pod + "/berth-" + id + ".scope", Runtime: "pod.slice:berth:" + id}
	}
	return CgroupRef{Path: pod + "/" + id, Runtime: pod + "/" + id}
}

func (f *fakeCgroups) ShimCgroup(string) string { return "" }

func (f *fakeCgroups) ToResources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	shares := uint64(r.GetCpuShares())
	return &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}}, nil
}

func (f *fakeCgroups) V2() bool      { return false }
func (f *fakeCgroups) Hugetlb() bool { return true }

func (f *fakeCgroups) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.paths)
}

// fakeMounter keeps mounts in a set; a mount fails for an fstype in fail.
type fakeMounter struct {
	mu     sync.Mutex
	mounts map[string]string // target -> fstype
	fail   map[string]error
}

func (f *fakeMounter) Mount(source, target, fstype string, flags uintptr, data string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[fstype]; err != nil {
		return err
	}
	f.mounts[target] = fstype
	return nil
}

func (f *fakeMounter) Unmount(target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounts, target)
	return nil
}

func (f *fakeMounter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mounts)
}

// fakeImages knows images by reference and counts leases.
type fakeImages struct {
	mu     sync.Mutex
	images map[string]ImageInfo
	leases map[string]string // owner -> image id
	lower  string
	// layers are an image's snapshot directories when not the one lower.
	layers map[string][]string
}

func (f *fakeImages) Resolve(ctx context.Context, ref string) (ImageInfo, error) {
	img, ok := f.images[ref]
	if !ok {
		return ImageInfo{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	return img, nil
}

func (f *fakeImages) Lowers(ctx context.Context, id string) ([]string, error) {
	if l, ok := f.layers[id]; ok {
		return l, nil
	}
	return []string{f.lower}, nil
}

func (f *fakeImages) Lease(ctx context.Context, owner, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases[owner] = id
	return nil
}

func (f *fakeImages) Unlease(ctx context.Context, owner string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.leases, owner)
	return nil
}

func (f *fakeImages) leaseCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.leases)
}

// testEnv is a Service built from fakes, with its fakes at hand.
type testEnv struct {
	svc     *Service
	cfg     config.Config
	shims   *fakeShims
	ns      *fakeNamespaces
	cg      *fakeCgroups
	mounts  *fakeMounter
	images  *fakeImages
	net     *fakeNetwork
	specErr error
	procSys string
	// features stand in for the node's probes (skipped with fakes).
	features HandlerFeatures
	// checkpoint is what the services are told of CRIU (available by default).
	checkpoint CheckpointSupport
}

const testImage = "docker.io/library/busybox:latest"

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Root, cfg.State = filepath.Join(dir, "root"), filepath.Join(dir, "state")
	cfg.NRI.Enable = false // it would listen on the node's NRI socket
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := &testEnv{
		cfg:    cfg,
		shims:  newFakeShims(),
		ns:     &fakeNamespaces{},
		cg:     &fakeCgroups{paths: map[string]bool{}},
		mounts: &fakeMounter{mounts: map[string]string{}, fail: map[string]error{}},
		images: &fakeImages{
			images: map[string]ImageInfo{testImage: {ID: "sha256:" + fmt.Sprintf("%064d", 1), Config: spec.ImageConfig{StopSignal: "SIGQUIT"}}},
			leases: map[string]string{}, lower: filepath.Join(dir, "lower"),
		},
		procSys:    filepath.Join(dir, "proc-sys"),
		net:        newFakeNetwork(),
		checkpoint: CheckpointSupport{Available: true},
	}
	env.svc = env.newService(t)
	return env
}

// newService builds a service over the env's fakes and state; several may be built in turn
// to simulate agent restarts.
func (e *testEnv) newService(t *testing.T) *Service {
	t.Helper()
	svc, err := New(Options{
		Config: e.cfg, Images: struct{ ImageStore }{}, ContainerImages: e.images, Shims: e.shims, Namespaces: e.ns,
		Cgroups: e.cg, Mounter: e.mounts, GenerateSpec: e.generate, Network: e.net,
		ResolvConf: filepath.Join(filepath.Dir(e.cfg.Root), "resolv.conf"), ProcSys: e.procSys,
		Features:   e.features,
		Checkpoint: &e.checkpoint,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	if err := svc.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return svc
}

func (e *testEnv) generate(id string, cfg *runtimeapi.ContainerConfig, sb spec.SandboxInfo, img spec.ImageConfig, opts spec.Options) (*specs.Spec, error) {
	if e.specErr != nil {
		return nil, e.specErr
	}
	var oom *int
	if r := cfg.GetLinux().GetResources(); r != nil {
		v := int(r.GetOomScoreAdj())
		oom = &v
	}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: cfg.GetCommand(), User: specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{10}}, OOMScoreAdj: oom},
		Root:    &specs.Root{Path: opts.RootfsPath},
		Linux:   &specs.Linux{CgroupsPath: opts.CgroupsPath},
	}, nil
}

func podConfig(name string, opts ...func(*runtimeapi.PodSandboxConfig)) *runtimeapi.PodSandboxConfig {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name + "-uid"},
		Hostname: name,
		Labels:   map[string]string{"app": name},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{},
	}
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

func withSysctls(kv map[string]string) func(*runtimeapi.PodSandboxConfig) {
	return func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls = kv }
}

func withHostNetwork() func(*runtimeapi.PodSandboxConfig) {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}
	}
}

func withLogDir(dir string) func(*runtimeapi.PodSandboxConfig) {
	return func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = dir }
}

func containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: testImage},
		Command:  []string{"sleep", "1000"},
		Labels:   map[string]string{"c": name},
		LogPath:  name + ".log",
	}
}

func (e *testEnv) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	return resp.PodSandboxId
}

func (e *testEnv) createContainer(t *testing.T, podID string, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	resp, err := e.svc.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	return resp.ContainerId
}

// assertNothingLeft checks that no record, resource, mount, cgroup, lease, shim or
// directory is left behind.
func (e *testEnv) assertNothingLeft(t *testing.T) {
	t.Helper()
	if n := len(e.svc.store.Sandboxes.List()); n != 0 {
		t.Errorf("%d sandbox records left", n)
	}
	if n := len(e.svc.store.Containers.List()); n != 0 {
		t.Errorf("%d container records left", n)
	}
	rs, err := e.svc.store.Resources()
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 0 {
		t.Errorf("resources left: %+v", rs)
	}
	if n := e.mounts.count(); n != 0 {
		t.Errorf("%d mounts left: %v", n, e.mounts.mounts)
	}
	if n := e.cg.count(); n != 0 {
		t.Errorf("%d cgroups left", n)
	}
	if n := e.images.leaseCount(); n != 0 {
		t.Errorf("%d leases left", n)
	}
	if n := e.net.attached(); n != 0 {
		t.Errorf("%d pods left attached to the network", n)
	}
	if n := e.shims.running(); n != 0 {
		t.Errorf("%d shims left running", n)
	}
	for _, d := range []string{"sandboxes", "shims", "netns", "containers"} {
		entries, _ := os.ReadDir(filepath.Join(e.cfg.State, d))
		if len(entries) != 0 {
			t.Errorf("state/%s not empty: %d entries", d, len(entries))
		}
	}
	entries, _ := os.ReadDir(filepath.Join(e.cfg.Root, "containers"))
	if len(entries) != 0 {
		t.Errorf("root/containers not empty: %d entries", len(entries))
	}
}
