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
		RestoreImages: r.RestoreImages, RestoreWork: r.RestoreWork,
	})
}

func (b backend) Checkpoint(ctx context.Context, r shim.CheckpointRequest) error {
	return b.m.Checkpoint(ctx, r.ID, runtime.CheckpointOptions{ImagesDir: r.ImagesDir, WorkDir: r.WorkDir, Stop: r.Stop})
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
		NetNS: r.NetNS, IPCNS: r.IPCNS, UTSNS: r.UTSNS, CgroupPath: r.CgroupPath, UserNS: r.UserNS,
		Seccomp: r.Seccomp,
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

func (b backend) Exec(ctx context.Context, id string, o shim.ExecOptions) (shim.ExecResult, error) {
	res, err := b.m.Exec(ctx, id, runtime.ExecOptions{
		Args: o.Cmd, Tty: o.Tty, Timeout: o.Timeout,
		Size:  runtime.TermSize{Width: o.Size.Width, Height: o.Size.Height},
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr, Resize: resizes(ctx, o.Resize),
	})
	return shim.ExecResult{ExitCode: res.ExitCode, TimedOut: res.TimedOut}, err
}

func (b backend) Attach(ctx context.Context, id string, s shim.Streams) error {
	return b.m.Attach(ctx, id, runtime.AttachOptions{
		Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Resize: resizes(ctx, s.Resize),
	})
}

// resizes converts the size channel until ctx ends.
func resizes(ctx context.Context, in <-chan shim.TermSize) <-chan runtime.TermSize {
	if in == nil {
		return nil
	}
	out := make(chan runtime.TermSize)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case sz, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- runtime.TermSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (b backend) Stats(id string) (shim.Stats, error) {
	st, err := b.m.Stats(id)
	return shim.Stats{
		Timestamp: st.Timestamp, CPUUsageNanos: st.CPUUsageNanos,
		MemoryUsageBytes: st.MemoryUsageBytes, MemoryWorkingSetBytes: st.MemoryWorkingSetBytes,
		MemoryRSSBytes: st.MemoryRSSBytes, MemoryLimitBytes: st.MemoryLimitBytes,
		PageFaults: st.PageFaults, MajorPageFaults: st.MajorPageFaults, SwapUsageBytes: st.SwapUsageBytes,
		PidsCurrent: st.PidsCurrent, PidsLimit: st.PidsLimit,
	}, err
}

func (b backend) ExecCount() int { return b.m.ExecCount() }
