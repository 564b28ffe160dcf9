package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// PodSandboxStatus reports a pod's state, namespaces and, when verbose, berth's view of it.
func (s *Service) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	sb, err := s.store.Sandboxes.Resolve(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("pod sandbox status: %w", err)
	}
	now := time.Now()
	md, st := sb.Metadata(), sb.Status()
	resp := &runtimeapi.PodSandboxStatusResponse{Status: toCRISandboxStatus(md, st)}
	if n := resp.Status.Network; n != nil {
		if ips := podIPs(md, st); len(ips) > 0 {
			n.Ip = ips[0]
			for _, ip := range ips[1:] {
				n.AdditionalIps = append(n.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
			}
		}
	}
	if req.GetVerbose() {
		info, err := sandboxVerboseInfo(md, st)
		if err != nil {
			return nil, fmt.Errorf("pod sandbox status %s: %w", sb.ID(), err)
		}
		resp.Info = info
		// The evented PLEG asks verbose and takes the pod's containers from this answer
		// instead of listing them; Timestamp orders it against the container events.
		// It is taken before the statuses are read: none is older than it says.
		resp.Timestamp = now.UnixNano()
		resp.ContainersStatuses = podContainerStatuses(s.store, sb.ID())
	}
	return resp, nil
}

// podContainerStatuses is the CRI status of each container of the pod, ordered by id.
func podContainerStatuses(st *store.Store, sandboxID string) []*runtimeapi.ContainerStatus {
	var out []*runtimeapi.ContainerStatus
	for _, c := range st.ContainersOf(sandboxID) {
		out = append(out, toCRIContainerStatus(c.Metadata(), c.Status()))
	}
	return out
}

func toCRISandboxState(st store.SandboxStatus) runtimeapi.PodSandboxState {
	if st.State == store.SandboxReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func toCRISandboxStatus(md store.SandboxMetadata, st store.SandboxStatus) *runtimeapi.PodSandboxStatus {
	cfg := md.Config.PodSandboxConfig
	nsOpts := namespaceOptions(cfg)
	out := &runtimeapi.PodSandboxStatus{
		Id:          md.ID,
		Metadata:    cfg.GetMetadata(),
		State:       toCRISandboxState(st),
		CreatedAt:   md.CreatedAt.UnixNano(),
		Labels:      cfg.GetLabels(),
		Annotations: cfg.GetAnnotations(),
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network: nsOpts.GetNetwork(), Pid: nsOpts.GetPid(), Ipc: nsOpts.GetIpc(),
			TargetId: nsOpts.GetTargetId(), UsernsOptions: nsOpts.GetUsernsOptions(),
		}}},
		RuntimeHandler: md.RuntimeHandler,
	}
	if !hostNetwork(cfg) {
		out.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: st.PodIP}
	}
	return out
}

// sandboxVerboseInfo is the "info" map crictl inspectp prints.
func sandboxVerboseInfo(md store.SandboxMetadata, st store.SandboxStatus) (map[string]string, error) {
	b, err := json.Marshal(struct {
		Metadata store.SandboxMetadata `json:"metadata"`
		Status   store.SandboxStatus   `json:"status"`
		Pid      int                   `json:"pid"`
	}{md, st, st.Pid})
	if err != nil {
		return nil, fmt.Errorf("encode verbose info: %w", err)
	}
	return map[string]string{"info": string(b)}, nil
}
