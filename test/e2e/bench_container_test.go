package e2e

import (
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestBenchPodLifecycle measures each step of a pod's life with CNI networking (a private
// bridge) and one busybox sleeper: medians and p90s of 20 lifecycles after 2 warm-ups.
// hack/bench-lifecycle.sh runs it; containerd is compared by make bench-compare.
func TestBenchPodLifecycle(t *testing.T) {
	if os.Getenv("BERTH_BENCH") == "" {
		t.Skip("set BERTH_BENCH=1 to run the pod lifecycle benchmark")
	}
	const runs, warm = 20, 2
	tn := newTestNet(t)
	a := tn.agent(t)
	img := env.images.busybox
	pull(t, a, img)
	ops := []string{"RunPodSandbox (CNI)", "CreateContainer", "StartContainer", "StopContainer (timeout 0)",
		"RemoveContainer", "StopPodSandbox", "RemovePodSandbox"}
	d := map[string][]time.Duration{}
	timed := func(op string, f func() error) {
		t.Helper()
		st := time.Now()
		err := f()
		d[op] = append(d[op], time.Since(st))
		must(t, err, "%s", op)
	}
	for i := range runs + warm {
		cfg := podConfig(t, fmt.Sprintf("bench-%d", i))
		var podID, id string
		timed(ops[0], func() error {
			r, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				podID = r.PodSandboxId
			}
			return err
		})
		cc := ctrConfig("c", img, withCommand("sleep", "1000"))
		cc.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: cfg.Linux.SecurityContext.NamespaceOptions}
		timed(ops[1], func() error {
			r, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cc, SandboxConfig: cfg})
			if err == nil {
				id = r.ContainerId
			}
			return err
		})
		timed(ops[2], func() error {
			_, err := a.rt.StartContainer(ctxT(t), &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		})
		timed(ops[3], func() error {
			_, err := a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id})
			return err
		})
		timed(ops[4], func() error {
			_, err := a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		})
		timed(ops[5], func() error {
			_, err := a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
			return err
		})
		timed(ops[6], func() error {
			_, err := a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
			return err
		})
	}
	for _, op := range ops {
		ds := d[op][warm:]
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Printf("%-28s median %7.2f ms  p90 %7.2f ms\n", op, ms(ds[len(ds)/2]), ms(ds[len(ds)*9/10]))
	}
	checkNoLeftovers(t, tn, a, 0)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
