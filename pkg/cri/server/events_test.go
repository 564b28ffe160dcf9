package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func eventTypes(t *testing.T, sub *eventSub) map[string][]runtimeapi.ContainerEventType {
	t.Helper()
	out := map[string][]runtimeapi.ContainerEventType{}
	for {
		select {
		case ev := <-sub.ch:
			if ev.PodSandboxStatus == nil || ev.PodSandboxStatus.Metadata == nil {
				t.Errorf("event %v has no pod sandbox status", ev)
			}
			out[ev.ContainerId] = append(out[ev.ContainerId], ev.ContainerEventType)
		default:
			return out
		}
	}
}

var fullLifecycle = fmt.Sprint([]runtimeapi.ContainerEventType{
	runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
	runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
})

func TestEventsLifecycleOrder(t *testing.T) {
	tests := []struct {
		name string
		// end takes the started container to its removal.
		end  func(t *testing.T, e *testEnv, podID, id string)
		want string
	}{
		{name: "exits, then removed", want: fullLifecycle, end: func(t *testing.T, e *testEnv, podID, id string) {
			e.shims.get(e.svc.shimDir(podID)).exit(id, 0)
			waitState(t, e, id, runtimeapi.ContainerState_CONTAINER_EXITED)
			removeCtr(t, e, id)
		}},
		{name: "stopped, then removed", want: fullLifecycle, end: func(t *testing.T, e *testEnv, podID, id string) {
			if _, err := e.svc.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			removeCtr(t, e, id)
		}},
		{name: "removed while running", want: fullLifecycle, end: func(t *testing.T, e *testEnv, podID, id string) {
			removeCtr(t, e, id)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			sub := e.svc.events.subscribe(100)
			defer e.svc.events.unsubscribe(sub)
			pod := podConfig("p")
			podID := e.runPod(t, pod)
			id := e.createContainer(t, podID, pod, containerConfig("c"))
			if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			tt.end(t, e, podID, id)
			// Late and repeated hooks, as an exit watcher racing with removal gives, add nothing.
			e.svc.events.container(id)
			e.svc.events.container(id)
			got := eventTypes(t, sub)
			if fmt.Sprint(got[id]) != tt.want {
				t.Errorf("container events %v, want %v", got[id], tt.want)
			}
			pod2 := got[podID]
			if len(pod2) != 2 || pod2[0] != runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT || pod2[1] != runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT {
				t.Errorf("sandbox events %v, want CREATED, STARTED", pod2)
			}
		})
	}
}

func removeCtr(t *testing.T, e *testEnv, id string) {
	t.Helper()
	if _, err := e.svc.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
}

func waitState(t *testing.T, e *testEnv, id string, want runtimeapi.ContainerState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := e.svc.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err == nil && resp.Status.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s not %s: %v %v", id, want, resp, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEventsSandboxStopAndRemove(t *testing.T) {
	e := newTestEnv(t)
	sub := e.svc.events.subscribe(100)
	defer e.svc.events.unsubscribe(sub)
	podID := e.runPod(t, podConfig("p"))
	ctx := context.Background()
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(eventTypes(t, sub)[podID]); got != fullLifecycle {
		t.Errorf("sandbox events %s, want %s", got, fullLifecycle)
	}
}

// A subscriber that falls behind is cut off, never silently skipped.
func TestEventsSlowSubscriberIsCutOff(t *testing.T) {
	e := newTestEnv(t)
	sub := e.svc.events.subscribe(1)
	pod := podConfig("p")
	podID := e.runPod(t, pod) // CREATED and STARTED: one more than the buffer
	select {
	case <-sub.dead:
	default:
		t.Fatal("subscriber with a full buffer was not cut off")
	}
	e.createContainer(t, podID, pod, containerConfig("c"))
	if n := len(sub.ch); n != 1 {
		t.Errorf("cut-off subscriber holds %d events, want the 1 queued before the cut", n)
	}
}

func TestKillMarksOOM(t *testing.T) {
	tests := []struct {
		name     string
		mark     bool
		oom      bool
		finished time.Duration // relative to the mark
		want     bool
	}{
		{name: "oom without agent kill", oom: true, want: true},
		{name: "no oom", mark: true, finished: time.Second, want: false},
		{name: "exit after agent SIGKILL", mark: true, oom: true, finished: time.Second, want: false},
		{name: "exit before agent SIGKILL", mark: true, oom: true, finished: -time.Second, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var k killMarks
			if tt.mark {
				k.mark("c")
			}
			if got := k.oomKilled("c", tt.oom, time.Now().Add(tt.finished)); got != tt.want {
				t.Errorf("oomKilled = %v, want %v", got, tt.want)
			}
			if len(k.ids) != 0 {
				t.Error("mark not forgotten after the exit was recorded")
			}
		})
	}
}
