package store

import (
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI configs are protobuf messages; these wrappers store them as protojson, which keeps
// the field names stable across cri-api versions.

// PodConfig is a stored *runtimeapi.PodSandboxConfig.
type PodConfig struct{ *runtimeapi.PodSandboxConfig }

// MarshalJSON encodes the config with protojson.
func (c PodConfig) MarshalJSON() ([]byte, error) { return marshalProto(c.PodSandboxConfig) }

// UnmarshalJSON decodes a protojson config.
func (c *PodConfig) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		c.PodSandboxConfig = nil
		return nil
	}
	c.PodSandboxConfig = &runtimeapi.PodSandboxConfig{}
	return protojson.Unmarshal(b, c.PodSandboxConfig)
}

// ContainerConfig is a stored *runtimeapi.ContainerConfig.
type ContainerConfig struct{ *runtimeapi.ContainerConfig }

// MarshalJSON encodes the config with protojson.
func (c ContainerConfig) MarshalJSON() ([]byte, error) { return marshalProto(c.ContainerConfig) }

// UnmarshalJSON decodes a protojson config.
func (c *ContainerConfig) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		c.ContainerConfig = nil
		return nil
	}
	c.ContainerConfig = &runtimeapi.ContainerConfig{}
	return protojson.Unmarshal(b, c.ContainerConfig)
}

// Resources is a stored *runtimeapi.LinuxContainerResources.
type Resources struct {
	*runtimeapi.LinuxContainerResources
}

// MarshalJSON encodes the resources with protojson.
func (r Resources) MarshalJSON() ([]byte, error) { return marshalProto(r.LinuxContainerResources) }

// UnmarshalJSON decodes protojson resources; "null" leaves them nil.
func (r *Resources) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		r.LinuxContainerResources = nil
		return nil
	}
	r.LinuxContainerResources = &runtimeapi.LinuxContainerResources{}
	return protojson.Unmarshal(b, r.LinuxContainerResources)
}

// marshalProto encodes m; a nil message (typed nil included) becomes JSON null.
func marshalProto(m proto.Message) ([]byte, error) {
	if m == nil || !m.ProtoReflect().IsValid() {
		return []byte("null"), nil
	}
	return protojson.Marshal(m)
}
