package kubelet_test

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
)

// The cgroup drivers, as berth's cgroup_driver and the kubelet's cgroupDriver name them.
const (
	driverCgroupfs = "cgroupfs"
	driverSystemd  = "systemd"
)

// cgroupDriver is the driver berth and the kubelet use in this suite: $BERTH_E2E_CGROUP_DRIVER
// when set, else systemd where systemd is PID 1 (sd_booted(3)), as the kubelet recommends on
// such a node, and cgroupfs elsewhere (the build host).
func cgroupDriver() string {
	if d := os.Getenv("BERTH_E2E_CGROUP_DRIVER"); d != "" {
		return d
	}
	if fi, err := os.Lstat("/run/systemd/system"); err == nil && fi.IsDir() {
		return driverSystemd
	}
	return driverCgroupfs
}

// podCgroup is the pod cgroup the kubelet makes with cgroupsPerQOS. cgroupfs:
// /kubepods/pod<uid> for Guaranteed pods, else /kubepods/<qos>/pod<uid>. systemd: the same
// as slices, each dash a level, the uid's dashes as underscores:
// /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice.
func podCgroup(p pod) string {
	qos := strings.ToLower(p.Status.QOSClass)
	if qos != "guaranteed" && qos != "burstable" {
		qos = "besteffort"
	}
	if env.driver != driverSystemd {
		if qos == "guaranteed" {
			return "/kubepods/pod" + p.Metadata.UID
		}
		return "/kubepods/" + qos + "/pod" + p.Metadata.UID
	}
	uid := strings.ReplaceAll(p.Metadata.UID, "-", "_")
	if qos == "guaranteed" {
		return "/kubepods.slice/kubepods-pod" + uid + ".slice"
	}
	return "/kubepods.slice/kubepods-" + qos + ".slice/kubepods-" + qos + "-pod" + uid + ".slice"
}

// kubepodsRoot is the top of the kubelet's pod cgroups, relative to a hierarchy root.
func kubepodsRoot() string {
	if env.driver == driverSystemd {
		return "kubepods.slice"
	}
	return "kubepods"
}

// isPodCgroupName reports whether a directory below kubepodsRoot is a pod's cgroup (rather
// than a QoS class's): pod<uid>, or kubepods[-<qos>]-pod<uid>.slice.
func isPodCgroupName(name string) bool {
	if env.driver == driverSystemd {
		return strings.HasSuffix(name, ".slice") && strings.Contains(name, "-pod")
	}
	return strings.HasPrefix(name, "pod")
}

// containerCgroup is where berth puts a container's cgroup inside its pod's: a directory named
// after it under cgroupfs, its scope berth-<id>.scope under systemd.
func containerCgroup(podPath, id string) string {
	if env.driver == driverSystemd {
		return path.Join(podPath, "berth-"+id+".scope")
	}
	return path.Join(podPath, id)
}

// systemdUnit returns properties of a systemd unit as systemctl shows them (name=value).
func systemdUnit(unit string, props ...string) (map[string]string, error) {
	args := []string{"show", unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	m := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// stopKubepodsSlice stops the kubelet's kubepods.slice and every unit below it, which systemd
// then removes; the kubelet leaves them when it stops, as it leaves /kubepods under cgroupfs.
func stopKubepodsSlice() error {
	u, err := systemdUnit("kubepods.slice", "LoadState")
	if err != nil {
		return err
	}
	if u["LoadState"] == "not-found" {
		return nil // the kubelet did not get as far as making it
	}
	if out, err := exec.Command("systemctl", "stop", "kubepods.slice").CombinedOutput(); err != nil {
		return fmt.Errorf("systemctl stop kubepods.slice: %v: %s", err, out)
	}
	return nil
}
