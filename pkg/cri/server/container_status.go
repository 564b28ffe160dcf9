package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// ContainerStatus reports a container's state and, when verbose, its pid and OCI spec.
func (s *Service) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.store.Containers.Resolve(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("container status: %w", err)
	}
	md, st := c.Metadata(), c.Status()
	resp := &runtimeapi.ContainerStatusResponse{Status: toCRIContainerStatus(md, st)}
	if req.GetVerbose() {
		resp.Info = containerVerboseInfo(md, st)
	}
	return resp, nil
}

func toCRIContainerState(st store.ContainerStatus) runtimeapi.ContainerState {
	switch st.State {
	case store.ContainerCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case store.ContainerRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case store.ContainerExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// statusImage is the image a container reports: the kubelet creates containers from the
// image's id (sha256:...) and shows status.image.image as the pod's image, so the name the
// user wrote, which the kubelet passes as user_specified_image, is reported when present.
func statusImage(created string, spec *runtimeapi.ImageSpec) *runtimeapi.ImageSpec {
	name := created
	if u := spec.GetUserSpecifiedImage(); u != "" {
		name = u
	}
	return &runtimeapi.ImageSpec{Image: name, UserSpecifiedImage: spec.GetUserSpecifiedImage(), Annotations: spec.GetAnnotations()}
}

func toCRIContainerStatus(md store.ContainerMetadata, st store.ContainerStatus) *runtimeapi.ContainerStatus {
	cfg := md.Config.ContainerConfig
	out := &runtimeapi.ContainerStatus{
		Id:          md.ID,
		Metadata:    cfg.GetMetadata(),
		State:       toCRIContainerState(st),
		CreatedAt:   md.CreatedAt.UnixNano(),
		ExitCode:    st.ExitCode,
		Image:       statusImage(md.ImageName, cfg.GetImage()),
		ImageRef:    md.ImageID,
		ImageId:     md.ImageID,
		Reason:      st.Reason,
		Message:     st.Message,
		Labels:      cfg.GetLabels(),
		Annotations: statusAnnotations(cfg.GetAnnotations(), md.NotHonoured),
		Mounts:      cfg.GetMounts(),
		LogPath:     md.LogPath,
		StopSignal:  cfg.GetStopSignal(),
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: int64(md.User.UID), Gid: int64(md.User.GID), SupplementalGroups: toInt64s(md.User.SupplementalGroups),
		}},
	}
	if !st.StartedAt.IsZero() {
		out.StartedAt = st.StartedAt.UnixNano()
	}
	if !st.FinishedAt.IsZero() {
		out.FinishedAt = st.FinishedAt.UnixNano()
	}
	if r := st.Resources.LinuxContainerResources; r != nil {
		out.Resources = &runtimeapi.ContainerResources{Linux: r}
	}
	return out
}

func toInt64s(in []uint32) []int64 {
	out := make([]int64, len(in))
	for i, v := range in {
		out[i] = int64(v)
	}
	return out
}

// containerVerboseInfo is the "info" map crictl inspect prints. The spec is read from the
// bundle: it is what the shim ran.
func containerVerboseInfo(md store.ContainerMetadata, st store.ContainerStatus) map[string]string {
	info := struct {
		SandboxID   string          `json:"sandboxID"`
		Pid         int             `json:"pid"`
		Removing    bool            `json:"removing"`
		Snapshotter string          `json:"snapshotter"`
		Rootfs      string          `json:"rootfs"`
		Bundle      string          `json:"bundle"`
		RuntimeSpec json.RawMessage `json:"runtimeSpec,omitempty"`
	}{SandboxID: md.SandboxID, Pid: st.Pid, Removing: st.Removing, Snapshotter: "overlayfs", Rootfs: md.Rootfs, Bundle: md.Bundle}
	if b, err := os.ReadFile(filepath.Join(md.Bundle, "config.json")); err == nil && json.Valid(b) {
		info.RuntimeSpec = b
	}
	b, err := json.Marshal(info)
	if err != nil {
		return map[string]string{"info": fmt.Sprintf("encode verbose info: %v", err)}
	}
	return map[string]string{"info": string(b)}
}
