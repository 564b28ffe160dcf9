package kubelet_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestResourceLimits: cpu and memory limits reach the container's cgroup, as
// the host sees it and as the container itself sees it.
func TestResourceLimits(t *testing.T) {
	t.Parallel()
	const (
		name      = "limits"
		memLimit  = 64 << 20 // 64Mi
		cpuQuota  = 25000    // 250m of a 100ms period
		cpuPeriod = 100000
		cpuShares = 256 // 250m * 1024 / 1000
	)
	// v1 files, else (cgroup v2, the container's own cgroup namespace) the unified ones.
	c := shell("limited", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null ||"+
		" cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; sleep 3600")
	c.Resources = &resources{Limits: map[string]string{"cpu": "250m", "memory": "64Mi"}}
	runPod(t, newPod(name, withContainer(c)))

	p := waitPod(t, name, 2*time.Minute, "limited running", running("limited"))
	if p.Status.QOSClass != "Guaranteed" {
		t.Errorf("kubelet: qosClass %q, want Guaranteed (limits imply requests)", p.Status.QOSClass)
	}
	st, _ := p.container("limited")
	id := runtimeID(st.ContainerID)

	insp, err := crictlInspect(id)
	if err != nil {
		t.Fatal(err)
	}
	if insp.Status.State != "CONTAINER_RUNNING" {
		t.Errorf("crictl: container is %s", insp.Status.State)
	}

	// The container's cgroup: from its pid when berth reports one, else by name below the pod's.
	podPath := podCgroup(p)
	cgroupOf := func(controller string) string {
		if pid := insp.pid(); pid > 0 {
			path, err := procCgroup(pid, controller)
			if err != nil {
				t.Fatal(err)
			}
			return path
		}
		path, err := findContainerCgroup(controller, podPath, id)
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	memPath, cpuPath := cgroupOf("memory"), cgroupOf("cpu")
	// Directly in the kubelet's pod cgroup: a directory named after the container, or its
	// scope under the systemd driver (kubepods.slice/kubepods-pod<uid>.slice/berth-<id>.scope).
	for _, path := range []string{memPath, cpuPath} {
		if want := containerCgroup(podPath, id); path != want {
			t.Errorf("container cgroup %s, want %s (in the kubelet's pod cgroup, driver %s)", path, want, env.driver)
		}
	}
	checks := []struct {
		controller, path, file string
		want                   int64
	}{
		{"memory", memPath, "memory.limit_in_bytes", memLimit},
		{"cpu", cpuPath, "cpu.cfs_quota_us", cpuQuota},
		{"cpu", cpuPath, "cpu.cfs_period_us", cpuPeriod},
		{"cpu", cpuPath, "cpu.shares", v2Shares(cpuShares)},
		// The kubelet sets the pod cgroup itself; berth must nest below it.
		{"memory", podPath, "memory.limit_in_bytes", memLimit},
	}
	for _, c := range checks {
		got, err := readCgroupInt(c.controller, c.path, c.file)
		if err != nil || got != c.want {
			t.Errorf("host: %s:%s/%s = %d, %v; want %d", c.controller, c.path, c.file, got, err, c.want)
		}
	}

	t.Run("container view", func(t *testing.T) {
		waitFor(t, 20*time.Second, "the container to print its own limits", func() (bool, string) {
			out, err := crictlLogs(id, false)
			return err == nil && strings.Contains(out, "67108864") && strings.Contains(out, "25000"), out + errString(err)
		})
	})

	// The kubelet reads the applied resources back from ContainerStatus (in-place resize).
	t.Run("crictl status resources", func(t *testing.T) {
		var res struct {
			Linux struct {
				CPUQuota           json.Number `json:"cpuQuota"`
				MemoryLimitInBytes json.Number `json:"memoryLimitInBytes"`
			} `json:"linux"`
		}
		out, err := crictl("inspect", "-o", "json", id)
		if err != nil {
			t.Fatal(err)
		}
		var whole struct {
			Status struct {
				Resources json.RawMessage `json:"resources"`
			} `json:"status"`
		}
		if err := json.Unmarshal(out, &whole); err != nil {
			t.Fatal(err)
		}
		if len(whole.Status.Resources) == 0 {
			t.Fatal("ContainerStatus has no resources")
		}
		if err := json.Unmarshal(whole.Status.Resources, &res); err != nil {
			t.Fatal(err)
		}
		if res.Linux.MemoryLimitInBytes.String() != "67108864" || res.Linux.CPUQuota.String() != "25000" {
			t.Errorf("ContainerStatus resources: %s", whole.Status.Resources)
		}
	})
}
