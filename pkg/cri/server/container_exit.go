package server

import (
	"context"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// waitRetries bounds how often an exit watcher retries a failing Wait before it gives the
// container up as unknown.
const (
	waitRetries    = 5
	waitRetryDelay = time.Second
)

// watchExit records the container's exit when its shim reports it. One goroutine per
// running container; it ends at the exit or when the service closes.
func (s *Service) watchExit(c *store.Container, cl ShimClient) {
	s.exits.Add(1)
	go func() {
		defer s.exits.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		s.awaitExit(ctx, c, cl)
	}()
}

func (s *Service) awaitExit(ctx context.Context, c *store.Container, cl ShimClient) {
	for attempt := 0; ; attempt++ {
		st, err := cl.Wait(ctx, c.ID())
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			s.logUpdate(c, s.recordExit(c, st))
			return
		case errdefs.IsNotFound(err):
			s.logUpdate(c, s.recordExit(c, ShimState{ExitCode: 255, Message: "container vanished from its shim"}))
			return
		case attempt >= waitRetries:
			s.log.Warn("lost track of container", "container", c.ID(), "err", err)
			s.logUpdate(c, c.Update(func(cs *store.ContainerStatus) error {
				if cs.State == store.ContainerRunning {
					cs.State = store.ContainerUnknown
					cs.Message = "lost contact with the shim: " + err.Error()
				}
				return nil
			}))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(waitRetryDelay):
		}
	}
}

func (s *Service) logUpdate(c *store.Container, err error) {
	if err != nil && !errdefs.IsNotFound(err) {
		s.log.Warn("record container exit", "container", c.ID(), "err", err)
	}
}
