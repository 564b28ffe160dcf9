package kubelet_test

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestPodCgroupLayout: a Burstable pod's cgroups are where the kubelet and berth agree they
// are, for the suite's driver. The kubelet makes the pod cgroup
// (kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice under systemd,
// kubepods/burstable/pod<uid> under cgroupfs); berth puts each container and the pod's init
// (the pod shares its pid namespace, so berth runs one) directly inside it
// (berth-<id>.scope and berth-podinit-<sandbox>.scope units of that slice, or <id> and
// pod-init directories) and nothing else; a container's memory limit is set on its own cgroup.
// Removing the pod removes all of them (and, under systemd, stops their units).
func TestPodCgroupLayout(t *testing.T) {
	t.Parallel()
	const name = "layout"
	limited := shell("limited", "sleep 3600")
	limited.Resources = &resources{Requests: map[string]string{"cpu": "100m", "memory": "16Mi"}, Limits: map[string]string{"memory": "64Mi"}}
	plain := shell("plain", "sleep 3600")
	plain.Resources = &resources{Requests: map[string]string{"cpu": "50m"}}
	p := newPod(name, withContainer(limited), withContainer(plain))
	p.Spec.ShareProcessNamespace = true
	runPod(t, p)

	p = waitPod(t, name, 2*time.Minute, "both containers running", func(p pod) bool {
		return running("limited")(p) && running("plain")(p)
	})
	if p.Status.QOSClass != "Burstable" {
		t.Fatalf("kubelet: qosClass %q, want Burstable (requests below limits)", p.Status.QOSClass)
	}
	sb, err := crictlReadyPod(name)
	if err != nil {
		t.Fatal(err)
	}
	podPath := podCgroup(p)
	root := controllerRoot("memory")
	if _, err := os.Stat(filepath.Join(root, podPath)); err != nil {
		t.Fatalf("the kubelet's pod cgroup: %v", err)
	}

	// Every child of the pod cgroup is berth's: the containers' and the pod init's.
	initCgroup := path.Join(podPath, "pod-init")
	if env.driver == driverSystemd {
		initCgroup = path.Join(podPath, "berth-podinit-"+sb.ID+".scope")
	}
	want := []string{path.Base(initCgroup)}
	var ctrCgroups []string
	for _, c := range p.Status.ContainerStatuses {
		id := runtimeID(c.ContainerID)
		cg := containerCgroup(podPath, id)
		ctrCgroups = append(ctrCgroups, cg)
		want = append(want, path.Base(cg))
		insp, err := crictlInspect(id)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := procCgroup(insp.pid(), "memory"); err != nil || got != cg {
			t.Errorf("container %s (pid %d) is in cgroup %q (%v), want %s", c.Name, insp.pid(), got, err, cg)
		}
	}
	got := childCgroups(filepath.Join(root, podPath))
	if !sameSet(got, want) {
		t.Errorf("the pod cgroup %s holds %v, want %v", podPath, got, want)
	}
	t.Logf("driver %s: pod cgroup %s holds %v", env.driver, podPath, got)
	limitedID := ""
	if st, ok := p.container("limited"); ok {
		limitedID = runtimeID(st.ContainerID)
	}
	if got, err := readCgroupInt("memory", containerCgroup(podPath, limitedID), "memory.limit_in_bytes"); err != nil || got != 64<<20 {
		t.Errorf("container limited: memory limit %d, %v; want %d", got, err, 64<<20)
	}
	if env.driver == driverSystemd {
		checkUnits(t, path.Base(podPath), "kubepods-burstable.slice")
		for _, cg := range append(ctrCgroups, initCgroup) {
			checkUnits(t, path.Base(cg), path.Base(podPath))
		}
	}
	if t.Failed() {
		return
	}

	removePod(t, name)
	waitFor(t, 2*time.Minute, "the pod's cgroups and units to go", func() (bool, string) {
		var left []string
		for _, cg := range append(ctrCgroups, initCgroup, podPath) {
			if _, err := os.Stat(filepath.Join(root, cg)); err == nil {
				left = append(left, "cgroup "+cg)
			}
		}
		if env.driver == driverSystemd {
			left = append(left, unitsLeft(append(ctrCgroups, initCgroup), podPath)...)
		}
		return len(left) == 0, fmt.Sprint(left)
	})
}

// unitsLeft lists what systemd still holds of a removed pod: berth's scopes must be gone
// (stopped and, if they failed, reset, or their names stay taken); the kubelet's pod slice
// must be stopped. systemd (252) keeps the kubelet's stopped slice loaded: that record is the
// kubelet's, not berth's.
func unitsLeft(berthUnits []string, podSlice string) []string {
	var left []string
	for _, cg := range berthUnits {
		u, err := systemdUnit(path.Base(cg), "LoadState", "ActiveState")
		if err != nil || u["LoadState"] != "not-found" {
			left = append(left, fmt.Sprintf("unit %s %v %v", path.Base(cg), u, err))
		}
	}
	u, err := systemdUnit(path.Base(podSlice), "LoadState", "ActiveState")
	if err != nil || (u["LoadState"] != "not-found" && u["ActiveState"] != "inactive") {
		left = append(left, fmt.Sprintf("unit %s %v %v", path.Base(podSlice), u, err))
	}
	return left
}

// checkUnits checks that systemd runs unit, in slice.
func checkUnits(t *testing.T, unit, slice string) {
	t.Helper()
	u, err := systemdUnit(unit, "ActiveState", "Slice")
	if err != nil {
		t.Error(err)
		return
	}
	if u["ActiveState"] != "active" || u["Slice"] != slice {
		t.Errorf("systemd unit %s: %v, want active in %s", unit, u, slice)
	}
}

// childCgroups lists the cgroup directories directly below dir.
func childCgroups(dir string) []string {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range es {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
