package spec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000::/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
alice:x:2000:2000:duplicate, first wins:/:/bin/sh
`

const testGroup = `root:x:0:
daemon:x:1:alice
alice:x:1000:
bob:x:1001:
audio:x:29:alice,bob
video:x:44:bob
staff:x:50:
`

func writeRootfs(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func i64(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }

func TestResolveUser(t *testing.T) {
	root := writeRootfs(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	tests := []struct {
		name string
		sc   *runtimeapi.LinuxContainerSecurityContext
		user string // image user
		want specs.User
		err  error
	}{
		{name: "default root", want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "image user name", user: "alice", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 1, 29}}},
		{name: "image uid with passwd entry", user: "1001", want: specs.User{UID: 1001, GID: 1001, AdditionalGids: []uint32{1001, 29, 44}}},
		{name: "image uid without entry", user: "4242", want: specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "image name:group", user: "alice:staff", want: specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{50, 1, 29}}},
		{name: "image uid:gid", user: "5:7", want: specs.User{UID: 5, GID: 7, AdditionalGids: []uint32{7}}},
		{name: "image unknown name", user: "mallory", err: errInvalid},
		{name: "image unknown group", user: "alice:nogroup", err: errInvalid},
		{
			name: "run_as_user overrides image user and group",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1001)},
			user: "alice:staff",
			want: specs.User{UID: 1001, GID: 1001, AdditionalGids: []uint32{1001, 29, 44}},
		},
		{
			name: "run_as_user and run_as_group",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(3000)},
			want: specs.User{UID: 1000, GID: 3000, AdditionalGids: []uint32{3000, 1, 29}},
		},
		{
			name: "run_as_group alone keeps image user",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: i64(44)},
			user: "bob",
			want: specs.User{UID: 1001, GID: 44, AdditionalGids: []uint32{44, 29}},
		},
		{
			name: "run_as_username",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "bob"},
			user: "alice",
			want: specs.User{UID: 1001, GID: 1001, AdditionalGids: []uint32{1001, 29, 44}},
		},
		{
			name: "run_as_username unknown names the user",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "ghost"},
			err:  errInvalid,
		},
		{
			name: "supplemental groups merged",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{29, 5000}},
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 1, 29, 5000}},
		},
		{
			name: "strict policy ignores /etc/group",
			sc: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser: i64(1000), SupplementalGroups: []int64{5000},
				SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict,
			},
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 5000}},
		},
		{
			name: "duplicate passwd entry: first wins",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "alice"},
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 1, 29}},
		},
		{name: "negative run_as_user", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(-1)}, err: errInvalid},
		{name: "uid out of range", user: "99999999999", err: errInvalid},
		{name: "negative supplemental group", sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{-5}}, err: errInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveUser(root, tt.sc, ImageConfig{User: tt.user})
			wantErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			if got.UID != tt.want.UID || got.GID != tt.want.GID || !slices.Equal(got.AdditionalGids, tt.want.AdditionalGids) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestResolveUserErrorNamesUser(t *testing.T) {
	root := writeRootfs(t, map[string]string{"etc/passwd": testPasswd})
	_, err := ResolveUser(root, &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "ghost"}, ImageConfig{})
	if err == nil || !strings.Contains(err.Error(), `"ghost"`) {
		t.Fatalf("error should name the user: %v", err)
	}
}

func TestResolveUserMissingFiles(t *testing.T) {
	root := t.TempDir() // a scratch image: no /etc at all
	got, err := ResolveUser(root, nil, ImageConfig{User: "1234:5678"})
	wantErr(t, err, nil)
	if got.UID != 1234 || got.GID != 5678 {
		t.Fatalf("got %+v", got)
	}
	_, err = ResolveUser(root, nil, ImageConfig{User: "nobody"})
	wantErr(t, err, errInvalid)
}

// An image's /etc/passwd symlinking out of the rootfs must not make us read the host's file.
func TestResolveUserSymlinkStaysInRoot(t *testing.T) {
	outside := writeRootfs(t, map[string]string{"passwd": "escaped:x:7:7::/:/bin/sh\n"})
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	target := "../../../../../../../.." + filepath.Join(outside, "passwd")
	if err := os.Symlink(target, filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	_, err := ResolveUser(root, nil, ImageConfig{User: "escaped"})
	wantErr(t, err, errInvalid)

	// The same link resolved inside the root does work.
	inRoot := filepath.Join(root, outside)
	if err := os.MkdirAll(inRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inRoot, "passwd"), []byte("inside:x:8:9::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ResolveUser(root, nil, ImageConfig{User: "inside"})
	wantErr(t, err, nil)
	if got.UID != 8 || got.GID != 9 {
		t.Fatalf("got %+v", got)
	}
}

func TestResolveUserRejectsNonRegularPasswd(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/passwd"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := ResolveUser(root, nil, ImageConfig{})
	if err == nil {
		t.Fatal("expected an error for a directory /etc/passwd")
	}
}

func TestResolveUserMissingRootfs(t *testing.T) {
	_, err := ResolveUser(filepath.Join(t.TempDir(), "nope"), nil, ImageConfig{})
	wantErr(t, err, errdefs.ErrFailedPrecondition)
}
