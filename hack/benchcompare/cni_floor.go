package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netns"
)

// The cni workload measures what the pod network costs with no runtime at all: libcni
// running the benchmark's own conflist (bridge + host-local, then portmap) against a fresh
// network namespace, ADD then DEL, the way both runtimes run it. Its medians are the floor
// under RunPodSandbox and StopPodSandbox for any runtime that uses these plugins.

// cniFloor runs ADD and DEL until the deadline, for the whole list and for the bridge
// plugin alone, and writes their medians and p90s to w.
func (p *profiler) cniFloor(deadline time.Time, w io.Writer) (int, error) {
	list, err := libcni.ConfListFromFile(filepath.Join(p.r.Root, "net.d", "10-bench.conflist"))
	if err != nil {
		return 0, fmt.Errorf("read the benchmark's conflist: %w", err)
	}
	bridgeOnly := *list
	bridgeOnly.Plugins = list.Plugins[:1]
	// A cache of our own: nothing is written to the node's /var/lib/cni.
	cache, err := os.MkdirTemp(p.r.State, "cni-floor-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(cache)
	cni := libcni.NewCNIConfigWithCacheDir([]string{cniBinDir()}, cache, nil)

	times := map[string][]float64{}
	n := 0
	for ; time.Now().Before(deadline); n++ {
		for _, l := range []struct {
			name string
			list *libcni.NetworkConfigList
		}{{"bridge+portmap", list}, {"bridge only", &bridgeOnly}} {
			add, del, err := cniAddDel(cni, l.list, fmt.Sprintf("cni-floor-%d", n))
			if err != nil {
				return n, fmt.Errorf("%s: %w", l.name, err)
			}
			times["ADD "+l.name] = append(times["ADD "+l.name], add)
			times["DEL "+l.name] = append(times["DEL "+l.name], del)
		}
	}
	fmt.Fprintf(w, "libcni alone, same conflist, fresh netns each time (no runtime):\n%-22s %6s %9s %9s\n", "call", "n", "med ms", "p90 ms")
	keys := make([]string, 0, len(times))
	for k := range times {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := times[k]
		fmt.Fprintf(w, "%-22s %6d %9.2f %9.2f\n", k, len(v), quantile(v, 0.5), quantile(v, 0.9))
	}
	return n, nil
}

// cniAddDel creates a network namespace, runs ADD and DEL of the list in it and returns
// their wall times in milliseconds; the namespace goes with its last file descriptor.
func cniAddDel(cni *libcni.CNIConfig, list *libcni.NetworkConfigList, id string) (float64, float64, error) {
	ns, err := newNetns()
	if err != nil {
		return 0, 0, err
	}
	defer ns.Close()
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns)), IfName: "eth0"}
	ctx, cancel := ctxT()
	defer cancel()
	start := time.Now()
	if _, err := cni.AddNetworkList(ctx, list, rt); err != nil {
		return 0, 0, fmt.Errorf("ADD: %w", err)
	}
	add := ms(time.Since(start))
	start = time.Now()
	if err := cni.DelNetworkList(context.Background(), list, rt); err != nil {
		return 0, 0, fmt.Errorf("DEL: %w", err)
	}
	return add, ms(time.Since(start)), nil
}

// newNetns makes a network namespace and returns a handle to it, leaving the calling thread
// in its own namespace.
func newNetns() (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, err
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread() // netns.New switches only once it succeeded
		return 0, fmt.Errorf("new netns: %w", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, and so is never reused in the wrong namespace.
		ns.Close()
		return 0, fmt.Errorf("back to the original netns: %w", err)
	}
	runtime.UnlockOSThread()
	return ns, nil
}

func cniBinDir() string {
	if d := os.Getenv("CNI_BIN_DIR"); d != "" {
		return d
	}
	return "/opt/cni/bin"
}
