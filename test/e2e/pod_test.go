package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodLifecycle(t *testing.T) {
	a := env.shared
	cfg := podConfig(t, "lifecycle", withDNS([]string{"10.0.0.10"}, []string{"svc.cluster.local"}))
	p := runPod(t, a, cfg)

	st, err := a.rt.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
	must(t, err, "pod status")
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("state = %s, want READY", st.Status.State)
	}
	if st.Status.Metadata.GetName() != "lifecycle" || st.Status.CreatedAt == 0 {
		t.Errorf("status lacks metadata or created time: %v", st.Status)
	}

	// What a container of the pod sees: hostname, resolv.conf, hosts.
	c := ctrConfig("probe", env.images.busybox, withShell("hostname; cat /etc/resolv.conf; cat /etc/hosts"))
	id := runContainer(t, a, p, c)
	if ex := waitExited(t, a, id, 30*time.Second); ex.ExitCode != 0 {
		t.Fatalf("probe exited %d: %s", ex.ExitCode, ex.Message)
	}
	out := logText(readLog(t, logPath(p, c)), "stdout")
	for _, want := range []string{"lifecycle\n", "nameserver 10.0.0.10", "search svc.cluster.local", "options ndots:5", "localhost"} {
		if !strings.Contains(out, want) {
			t.Errorf("container output lacks %q:\n%s", want, out)
		}
	}

	list, err := a.rt.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{"test": t.Name()},
	}})
	must(t, err, "list pods")
	if len(list.Items) != 1 || list.Items[0].Id != p.id {
		t.Fatalf("label filter listed %v, want only %s", list.Items, p.id)
	}

	_, err = a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
	must(t, err, "stop pod")
	st, err = a.rt.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id})
	must(t, err, "pod status after stop")
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("state after stop = %s, want NOTREADY", st.Status.State)
	}
	if cs := containerStatus(t, a, id); cs.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container state after pod stop = %s", cs.State)
	}
	_, err = a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
	must(t, err, "remove pod")
	_, err = a.rt.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("status of removed pod: %v, want NotFound", err)
	}
	_, err = a.rt.ContainerStatus(ctxT(t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("container of removed pod: %v, want NotFound", err)
	}
}

func TestPodBadInput(t *testing.T) {
	a := env.shared
	ctx := ctxT(t)
	_, err := a.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("pod without metadata: %v, want InvalidArgument", err)
	}
	cfg := podConfig(t, "dup")
	p := runPod(t, a, cfg)
	_, err = a.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), p.id) {
		t.Errorf("duplicate pod name: %v, want AlreadyExists naming %s", err, p.id)
	}
	bad := podConfig(t, "sysctl")
	bad.Linux.Sysctls = map[string]string{"vm.swappiness": "10"}
	_, err = a.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: bad})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "vm.swappiness") {
		t.Errorf("non-namespaced sysctl: %v, want InvalidArgument naming it", err)
	}
	// Stop and Remove of unknown ids succeed (the kubelet relies on it).
	if _, err := a.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "nope"}); err != nil {
		t.Errorf("stop unknown pod: %v", err)
	}
	if _, err := a.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "nope"}); err != nil {
		t.Errorf("remove unknown pod: %v", err)
	}
	_, err = a.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("status of unknown pod: %v, want NotFound", err)
	}
}

// Containers of one pod share its network, IPC and UTS namespaces.
func TestPodSharedNamespaces(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "shared"))
	var inodes []string
	for _, name := range []string{"one", "two"} {
		c := ctrConfig(name, env.images.busybox, withShell("for n in net ipc uts; do readlink /proc/self/ns/$n; done"))
		id := runContainer(t, a, p, c)
		waitExited(t, a, id, 30*time.Second)
		inodes = append(inodes, logText(readLog(t, logPath(p, c)), "stdout"))
	}
	if inodes[0] != inodes[1] || strings.Count(inodes[0], "[") != 3 {
		t.Fatalf("containers do not share namespaces:\n%s\n%s", inodes[0], inodes[1])
	}
	host, _ := os.Readlink("/proc/self/ns/net")
	if strings.Contains(inodes[0], host) {
		t.Fatalf("pod runs in the host network namespace %s", host)
	}
}

// With PID namespace mode POD, PID 1 is the pod's init, not a workload.
func TestPodSharedPIDNamespace(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "pidpod", withPodPID(runtimeapi.NamespaceMode_POD)))
	sleeper := runContainer(t, a, p, ctrConfig("sleeper", env.images.busybox, withCommand("sleep", "3600")))
	c := ctrConfig("ps", env.images.busybox, withShell("ps -o pid,args"))
	id := runContainer(t, a, p, c)
	waitExited(t, a, id, 30*time.Second)
	out := logText(readLog(t, logPath(p, c)), "stdout")
	if !strings.Contains(out, "sleep 3600") {
		t.Errorf("ps in the pod does not see the other container's sleep:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "1" && (strings.Contains(line, "sleep") || strings.Contains(line, "ps")) {
			t.Errorf("PID 1 is a workload: %q", line)
		}
	}
	_ = sleeper
}

// The verbose pod status carries the pod's container statuses, as the evented PLEG reads them.
func TestPodSandboxStatusContainers(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "statuses"))
	id := runContainer(t, a, p, ctrConfig("idle", env.images.busybox, withCommand("sleep", "3600")))
	st, err := a.rt.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
	must(t, err, "pod status")
	if len(st.ContainersStatuses) != 1 || st.ContainersStatuses[0].Id != id ||
		st.ContainersStatuses[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.Timestamp == 0 {
		t.Fatalf("verbose pod status: containers %v, timestamp %d; want %s running", st.ContainersStatuses, st.Timestamp, id)
	}
}
