package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

func TestRunPodSandboxRollback(t *testing.T) {
	tests := []struct {
		name   string
		inject func(e *testEnv)
		pod    *runtimeapi.PodSandboxConfig
	}{
		{name: "shm mount", inject: func(e *testEnv) { e.mounts.fail["tmpfs"] = errInjected }},
		{name: "namespaces", inject: func(e *testEnv) { e.ns.createErr = errInjected }},
		{name: "sysctls", inject: func(e *testEnv) { e.ns.doErr = errInjected },
			pod: podConfig("p", withSysctls(map[string]string{"net.ipv4.ip_forward": "1"}))},
		{name: "cgroup", inject: func(e *testEnv) { e.cg.ensureErr = errInjected }},
		{name: "shim start", inject: func(e *testEnv) { e.shims.startErr = errInjected }},
		{name: "pod init", inject: func(e *testEnv) { e.shims.podInit = errInjected }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			tt.inject(e)
			pod := tt.pod
			if pod == nil {
				pod = podConfig("p")
			}
			_, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: pod})
			if !errors.Is(err, errInjected) {
				t.Fatalf("RunPodSandbox = %v, want the injected failure", err)
			}
			e.assertNothingLeft(t)
			if _, held := e.svc.names.Holder(sandboxName(pod.Metadata)); held {
				t.Fatal("name still reserved after rollback")
			}
		})
	}
}

func TestRunPodSandboxValidation(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*runtimeapi.PodSandboxConfig)
		wantErr error
		wantMsg string
	}{
		{name: "no name", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "" }, wantErr: errdefs.ErrInvalidArgument, wantMsg: "metadata.name"},
		{name: "no namespace", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "" }, wantErr: errdefs.ErrInvalidArgument, wantMsg: "metadata.namespace"},
		{name: "no uid", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = "" }, wantErr: errdefs.ErrInvalidArgument, wantMsg: "metadata.uid"},
		{name: "node-wide sysctl", mutate: withSysctls(map[string]string{"kernel.pid_max": "1"}), wantErr: errdefs.ErrInvalidArgument, wantMsg: "kernel.pid_max"},
		{name: "net sysctl on host network", mutate: func(c *runtimeapi.PodSandboxConfig) {
			withHostNetwork()(c)
			c.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
		}, wantErr: errdefs.ErrInvalidArgument, wantMsg: "net.ipv4.ip_forward"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			pod := podConfig("p")
			tt.mutate(pod)
			_, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: pod})
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("RunPodSandbox = %v, want %v naming %q", err, tt.wantErr, tt.wantMsg)
			}
			e.assertNothingLeft(t)
		})
	}
}

func TestRunPodSandboxDuplicateName(t *testing.T) {
	e := newTestEnv(t)
	id := e.runPod(t, podConfig("p"))
	_, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("p")})
	if !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), id) {
		t.Fatalf("duplicate RunPodSandbox = %v, want AlreadyExists naming %s", err, id)
	}
	if n := len(e.svc.store.Sandboxes.List()); n != 1 {
		t.Fatalf("%d sandboxes after a duplicate, want 1", n)
	}
}

func TestRunPodSandboxSetsUpPod(t *testing.T) {
	e := newTestEnv(t)
	for _, d := range []string{"net/ipv4", "kernel"} {
		if err := os.MkdirAll(filepath.Join(e.procSys, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"net/ipv4/ip_forward", "kernel/shmmax"} { // sysctls exist, never created
		if err := os.WriteFile(filepath.Join(e.procSys, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pod := podConfig("p", withSysctls(map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "4096"}))
	pod.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"svc.cluster.local"}, Options: []string{"ndots:5"}}
	id := e.runPod(t, pod)

	sb, err := e.svc.store.Sandboxes.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	md, st := sb.Metadata(), sb.Status()
	if len(id) != 64 || st.Pid != 999 || md.NetNS == "" || md.IPCNS == "" || md.UTSNS == "" {
		t.Fatalf("sandbox id %q pid %d ns %q %q %q", id, st.Pid, md.NetNS, md.IPCNS, md.UTSNS)
	}
	if md.CgroupParent != "/berth/"+id || !e.cg.paths[md.CgroupParent] {
		t.Fatalf("pod cgroup %q not created", md.CgroupParent)
	}
	if e.mounts.mounts[md.ShmPath] != "tmpfs" {
		t.Fatalf("shm %q not a tmpfs mount: %v", md.ShmPath, e.mounts.mounts)
	}
	resolv, _ := os.ReadFile(filepath.Join(md.PodDir, "resolv.conf"))
	if want := "search svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"; string(resolv) != want {
		t.Fatalf("resolv.conf = %q, want %q", resolv, want)
	}
	hosts, _ := os.ReadFile(filepath.Join(md.PodDir, "hosts"))
	if !strings.Contains(string(hosts), "127.0.0.1\tlocalhost") {
		t.Fatalf("hosts = %q", hosts)
	}
	for file, want := range map[string]string{"net/ipv4/ip_forward": "1", "kernel/shmmax": "4096"} {
		if got, _ := os.ReadFile(filepath.Join(e.procSys, file)); string(got) != want {
			t.Fatalf("sysctl %s = %q, want %q", file, got, want)
		}
	}
	entered := strings.Join(e.ns.entered, " ")
	if !strings.Contains(entered, md.NetNS) || !strings.Contains(entered, md.IPCNS) {
		t.Fatalf("sysctls not applied inside the pod namespaces: entered %v", e.ns.entered)
	}
}

func TestRunPodSandboxHostNetworkCopiesHostResolv(t *testing.T) {
	e := newTestEnv(t)
	id := e.runPod(t, podConfig("p", withHostNetwork()))
	sb, _ := e.svc.store.Sandboxes.Get(id)
	md := sb.Metadata()
	if md.NetNS != "" || md.UTSNS != "" || md.IPCNS == "" {
		t.Fatalf("host network pod namespaces: net %q uts %q ipc %q", md.NetNS, md.UTSNS, md.IPCNS)
	}
	resolv, _ := os.ReadFile(filepath.Join(md.PodDir, "resolv.conf"))
	if string(resolv) != "nameserver 10.0.0.53\n" {
		t.Fatalf("resolv.conf = %q, want the host's", resolv)
	}
	resp, err := e.svc.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Status.Linux.Namespaces.Options.Network; got != runtimeapi.NamespaceMode_NODE {
		t.Fatalf("status network mode = %v", got)
	}
}

func TestStopRemoveSandboxIdempotent(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	id := e.runPod(t, pod)
	cid := e.createContainer(t, id, pod, containerConfig("c"))
	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cid}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("StopPodSandbox #%d: %v", i, err)
		}
	}
	st, err := e.svc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("status after stop = %v, %v", st, err)
	}
	cst, err := e.svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cid})
	if err != nil || cst.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("container after pod stop = %v, %v", cst, err)
	}
	if _, err := e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: id, Config: containerConfig("late"), SandboxConfig: pod}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("create in stopped pod = %v, want FailedPrecondition", err)
	}
	for i := range 2 {
		if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("RemovePodSandbox #%d: %v", i, err)
		}
	}
	e.assertNothingLeft(t)
	if _, err := e.svc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); !errdefs.IsNotFound(err) {
		t.Fatalf("status after remove = %v, want NotFound", err)
	}
	// The name is free again.
	e.runPod(t, pod)
}

func TestRemoveRunningSandbox(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	id := e.runPod(t, pod)
	cid := e.createContainer(t, id, pod, containerConfig("c"))
	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cid}); err != nil {
		t.Fatal(err)
	}
	e.createContainer(t, id, pod, containerConfig("never-started"))
	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	e.assertNothingLeft(t)
}

func TestUnknownIDsAreOK(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	unknown := strings.Repeat("f", 64)
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: unknown}); err != nil {
		t.Errorf("StopPodSandbox(unknown) = %v", err)
	}
	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: unknown}); err != nil {
		t.Errorf("RemovePodSandbox(unknown) = %v", err)
	}
	if _, err := e.svc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: unknown}); err != nil {
		t.Errorf("StopContainer(unknown) = %v", err)
	}
	if _, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: unknown}); err != nil {
		t.Errorf("RemoveContainer(unknown) = %v", err)
	}
	if _, err := e.svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: unknown}); !errdefs.IsNotFound(err) {
		t.Errorf("ContainerStatus(unknown) = %v, want NotFound", err)
	}
	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: unknown}); !errdefs.IsNotFound(err) {
		t.Errorf("StartContainer(unknown) = %v, want NotFound", err)
	}
}

func TestListPodSandboxFilters(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	a := e.runPod(t, podConfig("a"))
	b := e.runPod(t, podConfig("b"))
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: b}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{name: "all", filter: nil, want: []string{a, b}},
		{name: "id prefix", filter: &runtimeapi.PodSandboxFilter{Id: a[:12]}, want: []string{a}},
		{name: "ready", filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, want: []string{a}},
		{name: "not ready", filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}, want: []string{b}},
		{name: "label", filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "b"}}, want: []string{b}},
		{name: "label miss", filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "zz"}}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.svc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range resp.Items {
				got = append(got, it.Id)
			}
			if !sameSet(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// The pod init runs in a leaf below the pod cgroup (cgroup v2 allows processes only in leaves
// once the containers below need controllers). berth made the leaf, so it records and removes
// it even when the pod cgroup is the kubelet's, which the kubelet removes itself.
func TestRunPodSandboxPutsPodInitInLeafCgroup(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	const parent = "/kubepods/burstable/pod1"
	id := e.runPod(t, podConfig("p", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = parent }))
	sb, err := e.svc.store.Sandboxes.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parent + "/pod-init"
	if got := e.shims.get(sb.Metadata().ShimDir).podInitCgroup; got != leaf {
		t.Fatalf("pod init joined cgroup %q, want the leaf %q", got, leaf)
	}
	if !e.cg.paths[leaf] {
		t.Fatalf("leaf cgroup %q not created: %v", leaf, e.cg.paths)
	}
	rs, err := e.svc.store.ResourcesOf(id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rs, func(r store.Resource) bool { return r.Kind == store.KindCgroup && r.Path == leaf }) {
		t.Fatalf("leaf cgroup not in the ledger: %+v", rs)
	}
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if e.cg.paths[leaf] {
		t.Fatalf("leaf cgroup %q left after RemovePodSandbox", leaf)
	}
	if !e.cg.paths[parent] {
		t.Fatalf("the kubelet's pod cgroup %q was removed by berth", parent)
	}
}
