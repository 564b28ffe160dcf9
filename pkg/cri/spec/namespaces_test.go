package spec

import (
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestNamespaces(t *testing.T) {
	const (
		pod  = runtimeapi.NamespaceMode_POD
		ctr  = runtimeapi.NamespaceMode_CONTAINER
		node = runtimeapi.NamespaceMode_NODE
		tgt  = runtimeapi.NamespaceMode_TARGET
	)
	sb := SandboxInfo{ID: "sb", NetNSPath: "/run/netns/net", IPCNSPath: "/run/netns/ipc", UTSNSPath: "/run/netns/uts", PIDNSPath: "/proc/42/ns/pid"}
	podNS := []specs.LinuxNamespace{
		{Type: specs.NetworkNamespace, Path: sb.NetNSPath},
		{Type: specs.IPCNamespace, Path: sb.IPCNSPath},
		{Type: specs.UTSNamespace, Path: sb.UTSNSPath},
	}
	mnt := specs.LinuxNamespace{Type: specs.MountNamespace}
	tests := []struct {
		name string
		ns   *runtimeapi.NamespaceOption
		sb   SandboxInfo
		opts Options
		want []specs.LinuxNamespace
		err  error
	}{
		{
			name: "pid container",
			ns:   &runtimeapi.NamespaceOption{Pid: ctr},
			sb:   sb,
			want: append([]specs.LinuxNamespace{mnt, {Type: specs.PIDNamespace}}, podNS...),
		},
		{
			name: "pid pod joins the pod init",
			ns:   &runtimeapi.NamespaceOption{Pid: pod},
			sb:   sb,
			want: append([]specs.LinuxNamespace{mnt, {Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}}, podNS...),
		},
		{
			name: "nil options mean pod mode",
			sb:   sb,
			want: append([]specs.LinuxNamespace{mnt, {Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}}, podNS...),
		},
		{
			name: "pid pod without a pod pid namespace",
			ns:   &runtimeapi.NamespaceOption{Pid: pod},
			sb:   SandboxInfo{ID: "sb"},
			err:  errdefs.ErrFailedPrecondition,
		},
		{
			name: "pid target",
			ns:   &runtimeapi.NamespaceOption{Pid: tgt, TargetId: "c1"},
			sb:   sb,
			opts: Options{TargetPIDNSPath: "/proc/77/ns/pid"},
			want: append([]specs.LinuxNamespace{mnt, {Type: specs.PIDNamespace, Path: "/proc/77/ns/pid"}}, podNS...),
		},
		{
			name: "pid target without path",
			ns:   &runtimeapi.NamespaceOption{Pid: tgt, TargetId: "c1"},
			sb:   sb,
			err:  errdefs.ErrFailedPrecondition,
		},
		{
			name: "host everything",
			ns:   &runtimeapi.NamespaceOption{Pid: node, Network: node, Ipc: node},
			sb:   sb,
			want: []specs.LinuxNamespace{mnt},
		},
		{
			name: "host network, pod ipc",
			ns:   &runtimeapi.NamespaceOption{Pid: ctr, Network: node, Ipc: pod},
			sb:   SandboxInfo{IPCNSPath: "/run/netns/ipc"},
			want: []specs.LinuxNamespace{mnt, {Type: specs.PIDNamespace}, {Type: specs.IPCNamespace, Path: "/run/netns/ipc"}},
		},
		{
			name: "sandbox without pinned namespaces stays on the host",
			ns:   &runtimeapi.NamespaceOption{Pid: ctr},
			sb:   SandboxInfo{},
			want: []specs.LinuxNamespace{mnt, {Type: specs.PIDNamespace}},
		},
		{
			name: "cgroup namespace",
			ns:   &runtimeapi.NamespaceOption{Pid: ctr, Network: node, Ipc: node},
			opts: Options{CgroupNS: true},
			want: []specs.LinuxNamespace{mnt, {Type: specs.PIDNamespace}, {Type: specs.CgroupNamespace}},
		},
		{
			name: "user namespace without mappings refused",
			ns:   &runtimeapi.NamespaceOption{Pid: ctr, UsernsOptions: &runtimeapi.UserNamespace{Mode: pod}},
			sb:   sb,
			err:  errInvalid,
		},
		{
			name: "host user namespace accepted",
			ns:   &runtimeapi.NamespaceOption{Pid: node, Network: node, Ipc: node, UsernsOptions: &runtimeapi.UserNamespace{Mode: node}},
			want: []specs.LinuxNamespace{mnt},
		},
		{
			name: "target network mode invalid",
			ns:   &runtimeapi.NamespaceOption{Pid: ctr, Network: tgt},
			sb:   sb,
			err:  errInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Namespaces(tt.ns, tt.sb, tt.opts)
			wantErr(t, err, tt.err)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
