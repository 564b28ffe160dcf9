package spec

import (
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Args merges the CRI command and args with the image entrypoint and cmd the way Kubernetes
// defines it: a CRI command replaces both image fields, CRI args replace only the image cmd.
func Args(cfg *runtimeapi.ContainerConfig, img ImageConfig) ([]string, error) {
	var args []string
	switch {
	case len(cfg.GetCommand()) > 0:
		args = append(slices.Clone(cfg.GetCommand()), cfg.GetArgs()...)
	case len(cfg.GetArgs()) > 0:
		args = append(slices.Clone(img.Entrypoint), cfg.GetArgs()...)
	default:
		args = append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("no command specified: %w", errdefs.ErrInvalidArgument)
	}
	return args, nil
}
