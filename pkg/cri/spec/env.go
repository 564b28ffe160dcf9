package spec

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultPath is the PATH a container gets when neither the image nor the request sets one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Env builds the process environment. HOSTNAME comes first so that the image and then the CRI
// request can override it (containerd's order); later values replace earlier ones in place so
// the image's ordering is kept.
func Env(cfg *runtimeapi.ContainerConfig, img ImageConfig, hostname string) ([]string, error) {
	var e envList
	if hostname != "" {
		e.set("HOSTNAME=" + hostname)
	}
	for _, kv := range img.Env {
		e.set(kv)
	}
	for _, kv := range cfg.GetEnvs() {
		key := kv.GetKey()
		if key == "" || strings.Contains(key, "=") {
			return nil, fmt.Errorf("invalid environment variable name %q: %w", key, errdefs.ErrInvalidArgument)
		}
		// cri-api carries values as bytes; the kernel takes them as C strings either way.
		e.set(key + "=" + string(kv.GetValue()))
	}
	if !e.has("PATH") {
		e.set("PATH=" + DefaultPath)
	}
	return e.vars, nil
}

type envList struct {
	vars  []string
	index map[string]int
}

func envKey(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

func (e *envList) set(kv string) {
	if e.index == nil {
		e.index = map[string]int{}
	}
	k := envKey(kv)
	if i, ok := e.index[k]; ok {
		e.vars[i] = kv
		return
	}
	e.index[k] = len(e.vars)
	e.vars = append(e.vars, kv)
}

func (e *envList) has(key string) bool {
	_, ok := e.index[key]
	return ok
}
