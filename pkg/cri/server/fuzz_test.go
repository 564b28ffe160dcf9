package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/images"
	"github.com/berth-runtime/berth/pkg/images/reference"
)

const (
	// fuzzMaxOps bounds the calls of one input: long enough for create-start-stop-remove.
	fuzzMaxOps = 8
	// fuzzCallTimeout is each call's deadline; a call that outlives it by fuzzHangSlack hangs.
	fuzzCallTimeout = 5 * time.Second
	fuzzHangSlack   = 10 * time.Second
	// fuzzStreamWindow is how long a server stream runs: GetContainerEvents only ends when
	// the caller goes away.
	fuzzStreamWindow = 20 * time.Millisecond
)

// FuzzCRI drives every RuntimeService and ImageService RPC, unary and streaming, with
// arbitrary requests through the generated gRPC handlers (the real protobuf decoding),
// UnaryInterceptor/StreamInterceptor and the Service built from the fakes. One input is a
// sequence of up to fuzzMaxOps calls, each encoded as
//
//	[method index][payload length, 2 bytes little-endian][protobuf payload]
//
// (the index, modulo the number of methods, picks from fuzzMethods). The Service starts with
// a pod holding a running and a created container. Any string field "@pN" or "@cN" in a
// request becomes the N-th pod or container id the input has seen, so that sequences reach
// the real objects; host paths (mount sources, log directories) are rewritten below the test's
// directory because the Service creates them on the host.
//
// After each call: no panic (even one that an interceptor recovers), no call that outlives its
// deadline, every error a gRPC status that is neither Unknown (an unclassified error: the
// caller cannot tell its own mistake from ours) nor Internal, and the listings agree with
// the status RPCs (no listed pod or container that Status cannot find, no container of a
// missing pod). After the sequence, stopping and removing every pod leaves nothing behind.
func FuzzCRI(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(encodeOps(f, seed...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newFuzzHarness(t)
		for _, op := range decodeOps(data) {
			h.do(t, op)
			h.checkConsistent(t, op)
		}
		h.teardown(t)
	})
}

// fuzzMethod is one RPC of the two CRI services, with the generated handler that decodes
// its request.
type fuzzMethod struct {
	name   string // /runtime.v1.RuntimeService/Version
	unary  *grpc.MethodDesc
	stream *grpc.StreamDesc
}

var fuzzMethodList = sync.OnceValue(func() []fuzzMethod {
	var out []fuzzMethod
	for _, d := range []*grpc.ServiceDesc{&runtimeapi.RuntimeService_ServiceDesc, &runtimeapi.ImageService_ServiceDesc} {
		for i := range d.Methods {
			out = append(out, fuzzMethod{name: "/" + d.ServiceName + "/" + d.Methods[i].MethodName, unary: &d.Methods[i]})
		}
		for i := range d.Streams {
			out = append(out, fuzzMethod{name: "/" + d.ServiceName + "/" + d.Streams[i].StreamName, stream: &d.Streams[i]})
		}
	}
	return out
})

type fuzzOp struct {
	method  fuzzMethod
	payload []byte
}

func decodeOps(data []byte) []fuzzOp {
	methods := fuzzMethodList()
	var ops []fuzzOp
	for len(data) >= 3 && len(ops) < fuzzMaxOps {
		m := methods[int(data[0])%len(methods)]
		n := min(int(binary.LittleEndian.Uint16(data[1:3])), len(data)-3)
		ops = append(ops, fuzzOp{method: m, payload: data[3 : 3+n]})
		data = data[3+n:]
	}
	return ops
}

// seedOp is a call of a seed input: the method's short name and its request.
type seedOp struct {
	method string
	req    proto.Message
}

func encodeOps(tb testing.TB, ops ...seedOp) []byte {
	tb.Helper()
	methods := fuzzMethodList()
	var out []byte
	for _, op := range ops {
		i := slices.IndexFunc(methods, func(m fuzzMethod) bool { return strings.HasSuffix(m.name, "/"+op.method) })
		if i < 0 {
			tb.Fatalf("no CRI method %s", op.method)
		}
		b, err := proto.Marshal(op.req)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, byte(i))
		out = binary.LittleEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	return out
}

type fuzzHarness struct {
	env     *testEnv
	hostDir string
	unary   grpc.UnaryServerInterceptor
	stream  grpc.StreamServerInterceptor

	mu       sync.Mutex
	panicked string // the first panic seen inside a handler, with its stack

	pods, ctrs []string // every id seen, in order; removed ones stay (placeholders reach them)
}

func newFuzzHarness(t *testing.T) *fuzzHarness {
	env := newTestEnv(t)
	// The shared env has no ImageStore (its image RPCs are untested there); give it one.
	env.svc.images = pullObserver{ImageStore: newFuzzImages(), m: env.svc.prom}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := &fuzzHarness{
		env:     env,
		hostDir: filepath.Join(filepath.Dir(env.cfg.Root), "host"),
		unary:   UnaryInterceptor(env.svc, log),
		stream:  StreamInterceptor(env.svc, log),
	}
	// A few sysctls exist, as in /proc/sys; any other name is the kernel's ENOENT.
	for _, f := range []string{"net/ipv4/ip_forward", "kernel/shmmax", "fs/mqueue/msg_max"} {
		p := filepath.Join(env.procSys, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pod := podConfig("p")
	podID := env.runPod(t, pod)
	running := env.createContainer(t, podID, pod, containerConfig("app"))
	if _, err := env.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: running}); err != nil {
		t.Fatal(err)
	}
	created := env.createContainer(t, podID, pod, containerConfig("idle"))
	h.pods, h.ctrs = []string{podID}, []string{running, created}
	return h
}

// catch records a handler's panic and panics on, so that an interceptor that recovers
// still sees it, and the test fails either way.
func (h *fuzzHarness) catch() {
	if r := recover(); r != nil {
		h.mu.Lock()
		if h.panicked == "" {
			h.panicked = fmt.Sprintf("%v\n%s", r, debug.Stack())
		}
		h.mu.Unlock()
		panic(r)
	}
}

// decode is the generated handlers' request decoder, followed by the placeholder and host
// path rewriting.
func (h *fuzzHarness) decode(payload []byte, decodeFailed *bool) func(any) error {
	return func(req any) error {
		m := req.(proto.Message)
		if err := proto.Unmarshal(payload, m); err != nil {
			*decodeFailed = true
			return err
		}
		h.rewrite(m.ProtoReflect())
		return nil
	}
}

func (h *fuzzHarness) do(t *testing.T, op fuzzOp) {
	t.Helper()
	type result struct {
		resp any
		err  error
	}
	var decodeFailed bool
	done := make(chan result, 1)
	timeout := fuzzCallTimeout
	if op.method.stream != nil {
		timeout = fuzzStreamWindow
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		if m := op.method.unary; m != nil {
			intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
				return h.unary(ctx, req, info, func(ctx context.Context, req any) (any, error) {
					defer h.catch()
					return handler(ctx, req)
				})
			}
			resp, err := m.Handler(h.env.svc, ctx, h.decode(op.payload, &decodeFailed), intercept)
			done <- result{resp, err}
			return
		}
		ss := &fuzzServerStream{ctx: ctx, recv: h.decode(op.payload, &decodeFailed)}
		info := &grpc.StreamServerInfo{FullMethod: op.method.name, IsServerStream: true}
		err := h.stream(h.env.svc, ss, info, func(srv any, ss grpc.ServerStream) error {
			defer h.catch()
			return op.method.stream.Handler(srv, ss)
		})
		done <- result{nil, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(timeout + fuzzHangSlack):
		t.Fatalf("%s did not return %s after its deadline (request %x)", op.method.name, fuzzHangSlack, op.payload)
	}
	h.mu.Lock()
	panicked := h.panicked
	h.mu.Unlock()
	if panicked != "" {
		t.Fatalf("%s panicked: %s", op.method.name, panicked)
	}
	if decodeFailed {
		return // not a request: gRPC refuses it before berth sees it
	}
	h.checkError(t, op, r.err)
	switch resp := r.resp.(type) {
	case *runtimeapi.RunPodSandboxResponse:
		h.pods = append(h.pods, resp.GetPodSandboxId())
	case *runtimeapi.CreateContainerResponse:
		h.ctrs = append(h.ctrs, resp.GetContainerId())
	}
}

func (h *fuzzHarness) checkError(t *testing.T, op fuzzOp, err error) {
	t.Helper()
	if err == nil {
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: error %v is not a gRPC status", op.method.name, err)
	}
	switch st.Code() {
	case codes.Unknown, codes.Internal:
		t.Fatalf("%s: %s error for request %x: %v", op.method.name, st.Code(), op.payload, err)
	case codes.DeadlineExceeded, codes.Canceled:
		if op.method.stream == nil {
			t.Fatalf("%s: %s within %s: %v", op.method.name, st.Code(), fuzzCallTimeout, err)
		}
	}
}

// rewrite replaces id placeholders and moves host paths below hostDir, in place.
func (h *fuzzHarness) rewrite(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			// Labels, annotations, sysctls: free text, never ids or host paths we create.
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				switch fd.Kind() {
				case protoreflect.StringKind:
					l.Set(i, protoreflect.ValueOfString(h.rewriteString(fd, l.Get(i).String())))
				case protoreflect.MessageKind:
					h.rewrite(l.Get(i).Message())
				}
			}
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(h.rewriteString(fd, v.String())))
		case fd.Kind() == protoreflect.MessageKind:
			h.rewrite(v.Message())
		}
		return true
	})
}

func (h *fuzzHarness) rewriteString(fd protoreflect.FieldDescriptor, s string) string {
	switch fd.Name() {
	case "host_path", "log_directory":
		// The Service creates these on the host (the kubelet is trusted with the node).
		return filepath.Join(h.hostDir, filepath.Clean("/"+s))
	case "log_path":
		return strings.TrimPrefix(filepath.Clean("/"+s), "/")
	}
	if len(s) < 3 || s[0] != '@' {
		return s
	}
	n, err := strconv.Atoi(s[2:])
	if err != nil || n < 0 {
		return s
	}
	var ids []string
	switch s[1] {
	case 'p':
		ids = h.pods
	case 'c':
		ids = h.ctrs
	}
	if len(ids) == 0 {
		return s
	}
	return ids[n%len(ids)]
}

// checkConsistent: whatever the last call did, every listed object can be looked up and
// every container belongs to a listed pod.
func (h *fuzzHarness) checkConsistent(t *testing.T, op fuzzOp) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fuzzCallTimeout)
	defer cancel()
	svc := h.env.svc
	pods, err := svc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("after %s: ListPodSandbox: %v", op.method.name, err)
	}
	podIDs := map[string]bool{}
	for _, p := range pods.GetItems() {
		podIDs[p.GetId()] = true
		st, err := svc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.GetId()})
		if err != nil {
			t.Fatalf("after %s: listed pod %s has no status: %v", op.method.name, p.GetId(), err)
		}
		if st.GetStatus().GetId() != p.GetId() || st.GetStatus().GetState() != p.GetState() {
			t.Fatalf("after %s: pod %s listed as %v, status says %s %v", op.method.name, p.GetId(), p.GetState(), st.GetStatus().GetId(), st.GetStatus().GetState())
		}
	}
	ctrs, err := svc.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatalf("after %s: ListContainers: %v", op.method.name, err)
	}
	for _, c := range ctrs.GetContainers() {
		if !podIDs[c.GetPodSandboxId()] {
			t.Fatalf("after %s: container %s listed in pod %s, which is not listed", op.method.name, c.GetId(), c.GetPodSandboxId())
		}
		st, err := svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.GetId()})
		if err != nil {
			t.Fatalf("after %s: listed container %s has no status: %v", op.method.name, c.GetId(), err)
		}
		if st.GetStatus().GetId() != c.GetId() {
			t.Fatalf("after %s: status of container %s is of %s", op.method.name, c.GetId(), st.GetStatus().GetId())
		}
	}
}

// teardown removes every pod as the kubelet would and checks that nothing is left.
func (h *fuzzHarness) teardown(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fuzzCallTimeout)
	defer cancel()
	svc := h.env.svc
	pods, err := svc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("teardown: ListPodSandbox: %v", err)
	}
	for _, p := range pods.GetItems() {
		if _, err := svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			t.Fatalf("teardown: StopPodSandbox %s: %v", p.GetId(), err)
		}
		if _, err := svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			t.Fatalf("teardown: RemovePodSandbox %s: %v", p.GetId(), err)
		}
	}
	h.env.assertNothingLeft(t)
}

// fuzzServerStream is the server side of a streaming RPC: it receives the one request and
// discards what the handler sends.
type fuzzServerStream struct {
	ctx  context.Context
	recv func(any) error
}

func (s *fuzzServerStream) SetHeader(metadata.MD) error  { return nil }
func (s *fuzzServerStream) SendHeader(metadata.MD) error { return nil }
func (s *fuzzServerStream) SetTrailer(metadata.MD)       {}
func (s *fuzzServerStream) Context() context.Context     { return s.ctx }
func (s *fuzzServerStream) SendMsg(m any) error          { return s.ctx.Err() }
func (s *fuzzServerStream) RecvMsg(m any) error          { return s.recv(m) }

// fuzzImages is an ImageStore that pulls instantly: names are normalised (and refused) by
// pkg/images/reference as the real store does, ids are derived from the name.
type fuzzImages struct {
	mu     sync.Mutex
	byName map[string]images.Image // normalised name -> image
}

func newFuzzImages() *fuzzImages { return &fuzzImages{byName: map[string]images.Image{}} }

func (f *fuzzImages) Pull(ctx context.Context, ref string, auth *images.Auth) (images.Image, error) {
	name, err := reference.Normalize(ref)
	if err != nil {
		return images.Image{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	img := images.Image{ID: fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(name))), RepoTags: []string{name}, Size: 1}
	f.byName[name] = img
	return img, nil
}

func (f *fuzzImages) lookup(ref string) (string, images.Image, error) {
	if id, ok := reference.ParseID(ref); ok {
		for name, img := range f.byName {
			if img.ID == id {
				return name, img, nil
			}
		}
		return "", images.Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	name, err := reference.Normalize(ref)
	if err != nil {
		return "", images.Image{}, err
	}
	img, ok := f.byName[name]
	if !ok {
		return "", images.Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	return name, img, nil
}

func (f *fuzzImages) Get(ctx context.Context, ref string) (images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, img, err := f.lookup(ref)
	return img, err
}

func (f *fuzzImages) List(ctx context.Context) ([]images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]images.Image, 0, len(f.byName))
	for _, img := range f.byName {
		out = append(out, img)
	}
	return out, nil
}

func (f *fuzzImages) Remove(ctx context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name, _, err := f.lookup(ref)
	if err != nil {
		return err
	}
	delete(f.byName, name)
	return nil
}

func (f *fuzzImages) FsUsage(ctx context.Context) (images.FsUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return images.FsUsage{Mountpoint: "/fuzz", UsedBytes: uint64(len(f.byName)), InodesUsed: uint64(len(f.byName))}, nil
}

// fuzzSeeds are valid calls of every method on the harness's initial objects, and a few
// lifecycles.
func fuzzSeeds() [][]seedOp {
	pod := func(name string) *runtimeapi.PodSandboxConfig {
		return podConfig(name, withLogDir("pods/"+name), withSysctls(map[string]string{"net.ipv4.ip_forward": "1"}),
			withPortMappings(&runtimeapi.PortMapping{ContainerPort: 80, HostPort: 8080}))
	}
	ctr := func(name string) *runtimeapi.ContainerConfig {
		c := containerConfig(name)
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "data/" + name}}
		c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 64 << 20}}
		return c
	}
	res := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 30}
	img := &runtimeapi.ImageSpec{Image: "busybox:1.36"}
	single := []seedOp{
		{"Version", &runtimeapi.VersionRequest{Version: "v1"}},
		{"RunPodSandbox", &runtimeapi.RunPodSandboxRequest{Config: pod("q")}},
		{"RunPodSandbox", &runtimeapi.RunPodSandboxRequest{Config: podConfig("h", withHostNetwork())}},
		{"StopPodSandbox", &runtimeapi.StopPodSandboxRequest{PodSandboxId: "@p0"}},
		{"RemovePodSandbox", &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "@p0"}},
		{"PodSandboxStatus", &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "@p0", Verbose: true}},
		{"ListPodSandbox", &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: "@p0",
			State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}, LabelSelector: map[string]string{"app": "p"}}}},
		{"CreateContainer", &runtimeapi.CreateContainerRequest{PodSandboxId: "@p0", Config: ctr("x"), SandboxConfig: podConfig("p")}},
		{"StartContainer", &runtimeapi.StartContainerRequest{ContainerId: "@c1"}},
		{"StopContainer", &runtimeapi.StopContainerRequest{ContainerId: "@c0", Timeout: 1}},
		{"RemoveContainer", &runtimeapi.RemoveContainerRequest{ContainerId: "@c1"}},
		{"ListContainers", &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: "@p0",
			State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}}},
		{"ContainerStatus", &runtimeapi.ContainerStatusRequest{ContainerId: "@c0", Verbose: true}},
		{"UpdateContainerResources", &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "@c0", Linux: res}},
		{"ReopenContainerLog", &runtimeapi.ReopenContainerLogRequest{ContainerId: "@c0"}},
		{"ExecSync", &runtimeapi.ExecSyncRequest{ContainerId: "@c0", Cmd: []string{"true"}, Timeout: 1}},
		{"Exec", &runtimeapi.ExecRequest{ContainerId: "@c0", Cmd: []string{"sh"}, Stdout: true, Stderr: true}},
		{"Attach", &runtimeapi.AttachRequest{ContainerId: "@c0", Stdout: true}},
		{"PortForward", &runtimeapi.PortForwardRequest{PodSandboxId: "@p0", Port: []int32{80}}},
		{"ContainerStats", &runtimeapi.ContainerStatsRequest{ContainerId: "@c0"}},
		{"ListContainerStats", &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: "@p0"}}},
		{"PodSandboxStats", &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "@p0"}},
		{"ListPodSandboxStats", &runtimeapi.ListPodSandboxStatsRequest{}},
		{"UpdateRuntimeConfig", &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
			NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.1.0.0/16"}}}},
		{"Status", &runtimeapi.StatusRequest{Verbose: true}},
		{"CheckpointContainer", &runtimeapi.CheckpointContainerRequest{ContainerId: "@c0", Location: "cp.tar"}},
		{"CheckpointPod", &runtimeapi.CheckpointPodRequest{PodSandboxId: "@p0"}},
		{"RestorePod", &runtimeapi.RestorePodRequest{}},
		{"ListMetricDescriptors", &runtimeapi.ListMetricDescriptorsRequest{}},
		{"ListPodSandboxMetrics", &runtimeapi.ListPodSandboxMetricsRequest{}},
		{"RuntimeConfig", &runtimeapi.RuntimeConfigRequest{}},
		{"UpdatePodSandboxResources", &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "@p0", Resources: res, Overhead: res}},
		{"GetContainerEvents", &runtimeapi.GetEventsRequest{}},
		{"StreamPodSandboxes", &runtimeapi.StreamPodSandboxesRequest{}},
		{"StreamContainers", &runtimeapi.StreamContainersRequest{}},
		{"StreamContainerStats", &runtimeapi.StreamContainerStatsRequest{}},
		{"StreamPodSandboxStats", &runtimeapi.StreamPodSandboxStatsRequest{}},
		{"StreamPodSandboxMetrics", &runtimeapi.StreamPodSandboxMetricsRequest{}},
		{"ListImages", &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: img}}},
		{"StreamImages", &runtimeapi.StreamImagesRequest{}},
		{"ImageStatus", &runtimeapi.ImageStatusRequest{Image: img, Verbose: true}},
		{"PullImage", &runtimeapi.PullImageRequest{Image: img, Auth: &runtimeapi.AuthConfig{Username: "u", Password: "p"}, SandboxConfig: podConfig("p")}},
		{"RemoveImage", &runtimeapi.RemoveImageRequest{Image: img}},
		{"ImageFsInfo", &runtimeapi.ImageFsInfoRequest{}},
	}
	var seeds [][]seedOp
	for _, op := range single {
		seeds = append(seeds, []seedOp{op})
	}
	return append(seeds,
		[]seedOp{
			{"PullImage", &runtimeapi.PullImageRequest{Image: img}},
			{"ImageStatus", &runtimeapi.ImageStatusRequest{Image: img}},
			{"ListImages", &runtimeapi.ListImagesRequest{}},
			{"RemoveImage", &runtimeapi.RemoveImageRequest{Image: img}},
			{"ImageStatus", &runtimeapi.ImageStatusRequest{Image: img}},
		},
		[]seedOp{
			{"StopContainer", &runtimeapi.StopContainerRequest{ContainerId: "@c0"}},
			{"RemoveContainer", &runtimeapi.RemoveContainerRequest{ContainerId: "@c0"}},
			{"ContainerStatus", &runtimeapi.ContainerStatusRequest{ContainerId: "@c0"}},
			{"RemoveContainer", &runtimeapi.RemoveContainerRequest{ContainerId: "@c0"}},
		},
		[]seedOp{
			{"RunPodSandbox", &runtimeapi.RunPodSandboxRequest{Config: pod("q")}},
			{"CreateContainer", &runtimeapi.CreateContainerRequest{PodSandboxId: "@p1", Config: ctr("y"), SandboxConfig: pod("q")}},
			{"StartContainer", &runtimeapi.StartContainerRequest{ContainerId: "@c2"}},
			{"ExecSync", &runtimeapi.ExecSyncRequest{ContainerId: "@c2", Cmd: []string{"id"}}},
			{"StopPodSandbox", &runtimeapi.StopPodSandboxRequest{PodSandboxId: "@p1"}},
			{"RemovePodSandbox", &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "@p1"}},
			{"ContainerStatus", &runtimeapi.ContainerStatusRequest{ContainerId: "@c2"}},
		},
		[]seedOp{
			{"StopPodSandbox", &runtimeapi.StopPodSandboxRequest{PodSandboxId: "@p0"}},
			{"StartContainer", &runtimeapi.StartContainerRequest{ContainerId: "@c1"}},
			{"CreateContainer", &runtimeapi.CreateContainerRequest{PodSandboxId: "@p0", Config: ctr("z"), SandboxConfig: podConfig("p")}},
			{"RemovePodSandbox", &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "@p0"}},
			{"ListContainers", &runtimeapi.ListContainersRequest{}},
		},
		[]seedOp{
			{"RunPodSandbox", &runtimeapi.RunPodSandboxRequest{Config: podConfig("p")}},
			{"CreateContainer", &runtimeapi.CreateContainerRequest{PodSandboxId: "@p0", Config: containerConfig("app"), SandboxConfig: podConfig("p")}},
			{"UpdatePodSandboxResources", &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "@p0"}},
		},
	)
}
