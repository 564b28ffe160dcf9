package kubelet_test

import (
	"strings"
	"testing"
	"time"
)

// TestInitContainerRunsFirst: the app container starts only after the init
// container has exited 0, and sees what the init container left in a volume.
func TestInitContainerRunsFirst(t *testing.T) {
	t.Parallel()
	const name = "init"
	runPod(t, newPod(name, withEmptyDir("work"),
		withInitContainer(withMount(shell("setup", "sleep 4; echo init-done > /work/marker; echo setup finished"), "work", "/work")),
		withContainer(withMount(shell("app", "echo app sees $(cat /work/marker || echo nothing); sleep 3600"), "work", "/work")),
	))

	var early []string
	p := waitPod(t, name, 2*time.Minute, "pod initialized and app running", func(p pod) bool {
		initSt, _ := p.container("setup")
		if running("app")(p) && initSt.State.Terminated == nil {
			early = append(early, p.summary())
		}
		return p.condition("Initialized") && running("app")(p)
	})
	if len(early) > 0 {
		t.Errorf("kubelet: app ran before setup finished: %s", early[0])
	}
	initSt, _ := p.container("setup")
	app, _ := p.container("app")
	if term := initSt.State.Terminated; term == nil || term.ExitCode != 0 || term.Reason != "Completed" {
		t.Fatalf("kubelet: want setup terminated with 0 (Completed), got %s", initSt.State)
	}
	if app.State.Running.StartedAt.Before(initSt.State.Terminated.FinishedAt) {
		t.Errorf("kubelet: app started at %v, before setup finished at %v", app.State.Running.StartedAt, initSt.State.Terminated.FinishedAt)
	}

	// crictl: the init container exited 0 before the app container started.
	initInsp, err := crictlInspect(runtimeID(initSt.ContainerID))
	if err != nil {
		t.Fatal(err)
	}
	appInsp, err := crictlInspect(runtimeID(app.ContainerID))
	if err != nil {
		t.Fatal(err)
	}
	if initInsp.Status.State != "CONTAINER_EXITED" || initInsp.Status.ExitCode != 0 {
		t.Errorf("crictl: setup is %s with exit code %d", initInsp.Status.State, initInsp.Status.ExitCode)
	}
	finished, err1 := time.Parse(time.RFC3339Nano, initInsp.Status.FinishedAt)
	started, err2 := time.Parse(time.RFC3339Nano, appInsp.Status.StartedAt)
	if err1 != nil || err2 != nil || started.Before(finished) {
		t.Errorf("crictl: setup finished %q, app started %q (%v %v)", initInsp.Status.FinishedAt, appInsp.Status.StartedAt, err1, err2)
	}
	for id, want := range map[string]string{initSt.ContainerID: "setup finished", app.ContainerID: "app sees init-done"} {
		out, err := crictlLogs(runtimeID(id), false)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("crictl logs %s: want %q, got %q%s", id, want, out, errString(err))
		}
	}
}
