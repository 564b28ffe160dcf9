package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// podStopGrace is how long StopPodSandbox waits for each container's stop signal to work.
// The kubelet has already stopped containers gracefully by then; this covers direct callers.
const podStopGrace = 2 * time.Second

// StopPodSandbox stops every container of the pod and its shim (which ends the pod init),
// and unmounts its shm. Stopping a stopped or unknown pod is success.
func (s *Service) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	sb, err := s.store.Sandboxes.Resolve(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stop pod sandbox: %w", err)
	}
	if err := s.stopSandbox(ctx, sb, opStopPod); err != nil {
		return nil, fmt.Errorf("stop pod sandbox %s: %w", sb.ID(), err)
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// opStopPod names StopPodSandbox's steps in berth_operation_step_duration_seconds.
const opStopPod = "StopPodSandbox"

// stopSandbox stops a pod's containers, shim and network; op names the CRI operation whose
// steps these are (a RemovePodSandbox stops the pod again, usually finding it stopped).
func (s *Service) stopSandbox(ctx context.Context, sb *store.Sandbox, op string) error {
	defer s.events.sandbox(sb.ID())
	md := sb.Metadata()
	if err := s.timeStep(op, "stop containers", func() error { return s.stopContainers(ctx, s.store.ContainersOf(md.ID)) }); err != nil {
		return fmt.Errorf("stop containers: %w", err)
	}
	defer s.nri.BlockSync()() // from the NRI event until the pod is marked stopped: see nri.go
	if err := s.nriStopPodSandbox(ctx, sb); err != nil {
		return err
	}
	if err := s.stopShimAndNetwork(ctx, md, op); err != nil {
		return err
	}
	if md.ShmPath != "" && md.ShmPath != "/dev/shm" {
		if err := s.releaseHeld(ctx, store.Resource{Kind: store.KindMount, Path: md.ShmPath, Owner: md.ID}); err != nil {
			return fmt.Errorf("unmount shm: %w", err)
		}
	}
	err := sb.Update(func(st *store.SandboxStatus) error {
		st.State = store.SandboxNotReady
		st.Pid = 0
		return nil
	})
	if errdefs.IsNotFound(err) {
		return nil // removed concurrently
	}
	return err
}

// stopShimAndNetwork shuts the shim down and tears the pod network down side by side: they
// are independent (the plugins work on the pinned netns, not on the pod's processes), and
// each costs process starts and exits, so a pod's stop takes the longer of the two.
func (s *Service) stopShimAndNetwork(ctx context.Context, md store.SandboxMetadata, op string) error {
	var shimErr, netErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The shim's exit records are no longer needed: every exit is in the store now.
		// Shutting it down kills the pod init, and with it the pod's pid namespace.
		err := s.timeStep(op, "stop shim", func() error {
			return s.releaseHeld(ctx, store.Resource{Kind: store.KindShim, Path: md.ShimDir, Owner: md.ID})
		})
		if err != nil {
			shimErr = fmt.Errorf("stop shim: %w", err)
		}
	}()
	// DEL before the netns is unpinned (at remove), so the plugins find the pod's interface.
	if err := s.timeStep(op, "tear down network", func() error { return s.teardownNetwork(ctx, md) }); err != nil {
		netErr = fmt.Errorf("tear down network: %w", err)
	}
	wg.Wait()
	return errors.Join(shimErr, netErr)
}

// stopContainers stops containers in parallel, so a pod's stop takes one grace period, not
// one per container.
func (s *Service) stopContainers(ctx context.Context, cs []*store.Container) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.stopContainer(ctx, c, podStopGrace); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("container %s: %w", c.ID(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
