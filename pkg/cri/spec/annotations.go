package spec

import runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

// Annotation keys containerd sets on container specs; hooks and NRI-style tools key on them.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationImageName        = "io.kubernetes.cri.image-name"

	ContainerTypeContainer = "container"
)

func annotations(cfg *runtimeapi.ContainerConfig, sb SandboxInfo, opts Options) map[string]string {
	image := opts.ImageName
	if image == "" {
		image = cfg.GetImage().GetImage()
	}
	a := map[string]string{
		AnnotationContainerType: ContainerTypeContainer,
		AnnotationSandboxID:     sb.ID,
	}
	for k, v := range map[string]string{
		AnnotationContainerName:    cfg.GetMetadata().GetName(),
		AnnotationSandboxName:      sb.Name,
		AnnotationSandboxNamespace: sb.Namespace,
		AnnotationSandboxUID:       sb.UID,
		AnnotationImageName:        image,
	} {
		if v != "" {
			a[k] = v
		}
	}
	return a
}
