package main

import (
	"context"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-runtime/berth/pkg/runtime"
	"github.com/berth-runtime/berth/pkg/shim"
)

// backend adapts runtime.Manager to shim.Backend, translating types only.
type backend struct{ m *runtime.Manager }

func (b backend) Create(r shim.CreateRequest) (int, error) {
	return b.m.Create(runtime.CreateOptions{
		ID: r.ID, Bundle: r.Bundle, LogPath: r.LogPath, Stdin: r.Stdin, StdinOnce: r.StdinOnce, Tty: r.Tty,
	})
}

func (b backend) Start(id string) error { return b.m.Start(id) }

func (b backend) Kill(id string, sig syscall.Signal, all bool) error { return b.m.Kill(id, sig, all) }

func (b backend) Wait(ctx context.Context, id string) (shim.State, error) {
	st, err := b.m.Wait(ctx, id)
	return toState(st), err
}

func (b backend) State(id string) (shim.State, error) {
	st, err := b.m.State(id)
	return toState(st), err
}

func (b backend) List() []shim.State {
	var out []shim.State
	for _, st := range b.m.List() {
		out = append(out, toState(st))
	}
	return out
}

func (b backend) Update(id string, res *specs.LinuxResources) error { return b.m.Update(id, res) }

func (b backend) ReopenLog(id string) error { return b.m.ReopenLog(id) }

func (b backend) Delete(ctx context.Context, id string) error { return b.m.Delete(ctx, id) }

func (b backend) StartPodInit(r shim.PodInitRequest) (int, error) {
	return b.m.StartPodInit(runtime.PodInitOptions{
		NetNS: r.NetNS, IPCNS: r.IPCNS, UTSNS: r.UTSNS, CgroupPath: r.CgroupPath,
	})
}

func (b backend) Close(ctx context.Context) error { return b.m.Close(ctx) }

func toState(st runtime.Status) shim.State {
	return shim.State{
		ID: st.ID, Status: st.Status, Pid: st.Pid, ExitCode: st.ExitCode,
		CreatedAt: st.CreatedAt, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt,
		OOMKilled: st.OOMKilled, Reason: st.Reason, Message: st.Message,
	}
}
