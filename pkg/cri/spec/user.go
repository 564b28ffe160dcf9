package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxIDFileSize bounds how much of an image's /etc/passwd or /etc/group we read: the files come
// from untrusted images.
const maxIDFileSize = 4 << 20

// RootfsUsers resolves users against the /etc/passwd and /etc/group of an unpacked rootfs.
type RootfsUsers struct{ Rootfs string }

// LookupUser implements UserLookup.
func (r RootfsUsers) LookupUser(sc *runtimeapi.LinuxContainerSecurityContext, img ImageConfig) (specs.User, error) {
	return ResolveUser(r.Rootfs, sc, img)
}

// ResolveUser picks the container user from the security context (run_as_username, run_as_user,
// run_as_group) or else the image's User ("name", "uid", "name:group", "uid:gid"), and computes
// the additional groups. The rootfs's files are opened inside the root so that symlinks in an
// image cannot point the lookup at the host's files.
func ResolveUser(rootfs string, sc *runtimeapi.LinuxContainerSecurityContext, img ImageConfig) (specs.User, error) {
	// A missing /etc/passwd is normal, a missing rootfs is not: do not mistake one for the other.
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return specs.User{}, fmt.Errorf("resolve user: rootfs %q is not a directory: %w", rootfs, errdefs.ErrFailedPrecondition)
	}
	passwd, err := readInRoot(rootfs, "/etc/passwd")
	if err != nil {
		return specs.User{}, err
	}
	group, err := readInRoot(rootfs, "/etc/group")
	if err != nil {
		return specs.User{}, err
	}
	return resolveUser(sc, img, passwd, group)
}

// readInRoot returns nil for a missing file: images without /etc/passwd are common (scratch).
func readInRoot(rootfs, name string) ([]byte, error) {
	h, err := pathrs.OpenInRoot(rootfs, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s in rootfs %q: %w", name, rootfs, err)
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("open %s in rootfs %q: %w", name, rootfs, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s in rootfs %q is not a regular file: %w", name, rootfs, errdefs.ErrInvalidArgument)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxIDFileSize))
	if err != nil {
		return nil, fmt.Errorf("read %s in rootfs %q: %w", name, rootfs, err)
	}
	return b, nil
}

// resolveUser is ResolveUser on file contents; nil contents mean the file is missing.
func resolveUser(sc *runtimeapi.LinuxContainerSecurityContext, img ImageConfig, passwd, group []byte) (specs.User, error) {
	userArg, groupArg := userSpec(sc, img)
	users, err := parsePasswd(passwd)
	if err != nil {
		return specs.User{}, err
	}
	groups, err := parseGroup(group)
	if err != nil {
		return specs.User{}, err
	}

	var u specs.User
	var entry *user.User
	switch {
	case userArg == "":
		entry = findUser(users, func(e user.User) bool { return e.Uid == 0 })
	case isNumeric(userArg):
		uid, err := parseID("user", userArg)
		if err != nil {
			return specs.User{}, err
		}
		u.UID = uid
		entry = findUser(users, func(e user.User) bool { return e.Uid == int(uid) })
	default:
		entry = findUser(users, func(e user.User) bool { return e.Name == userArg })
		if entry == nil {
			return specs.User{}, fmt.Errorf("resolve user %q: no such user in the image's /etc/passwd: %w", userArg, errdefs.ErrInvalidArgument)
		}
		if u.UID, err = parseID("user", strconv.Itoa(entry.Uid)); err != nil {
			return specs.User{}, err
		}
	}

	switch {
	case groupArg == "":
		if entry != nil {
			if u.GID, err = parseID("group", strconv.Itoa(entry.Gid)); err != nil {
				return specs.User{}, err
			}
		}
	case isNumeric(groupArg):
		if u.GID, err = parseID("group", groupArg); err != nil {
			return specs.User{}, err
		}
	default:
		i := slices.IndexFunc(groups, func(g user.Group) bool { return g.Name == groupArg })
		if i < 0 {
			return specs.User{}, fmt.Errorf("resolve group %q: no such group in the image's /etc/group: %w", groupArg, errdefs.ErrInvalidArgument)
		}
		if u.GID, err = parseID("group", strconv.Itoa(groups[i].Gid)); err != nil {
			return specs.User{}, err
		}
	}

	gids := []uint32{u.GID}
	// Merge (the default) adds the memberships the image's /etc/group gives the user; Strict
	// keeps exactly the groups the pod asked for (KEP-3619).
	if sc.GetSupplementalGroupsPolicy() != runtimeapi.SupplementalGroupsPolicy_Strict && entry != nil {
		for _, g := range groups {
			if slices.Contains(g.List, entry.Name) && g.Gid >= 0 && g.Gid <= math.MaxInt32 {
				gids = append(gids, uint32(g.Gid))
			}
		}
	}
	for _, g := range sc.GetSupplementalGroups() {
		if g < 0 || g > math.MaxInt32 {
			return specs.User{}, fmt.Errorf("supplemental group %d out of range: %w", g, errdefs.ErrInvalidArgument)
		}
		gids = append(gids, uint32(g))
	}
	u.AdditionalGids = dedupe(gids)
	return u, nil
}

// checkRunAsGroup enforces the CRI rule that run_as_group comes with run_as_user or
// run_as_username: a group alone would silently pair with the image's user.
func checkRunAsGroup(sc *runtimeapi.LinuxContainerSecurityContext) error {
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
		return fmt.Errorf("run_as_group %d without run_as_user or run_as_username: %w", sc.GetRunAsGroup().GetValue(), errdefs.ErrInvalidArgument)
	}
	return nil
}

// userSpec returns the requested user and group, the CRI fields taking precedence over the
// image. An explicit run_as_user drops the image's group: the primary group then comes from
// /etc/passwd, as with containerd.
func userSpec(sc *runtimeapi.LinuxContainerSecurityContext, img ImageConfig) (string, string) {
	userArg, groupArg, _ := strings.Cut(img.User, ":")
	switch {
	case sc.GetRunAsUsername() != "":
		userArg, groupArg, _ = strings.Cut(sc.GetRunAsUsername(), ":")
	case sc.GetRunAsUser() != nil:
		userArg, groupArg = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10), ""
	}
	if sc.GetRunAsGroup() != nil {
		groupArg = strconv.FormatInt(sc.GetRunAsGroup().GetValue(), 10)
	}
	return userArg, groupArg
}

func parsePasswd(b []byte) ([]user.User, error) {
	if b == nil {
		return nil, nil
	}
	users, err := user.ParsePasswd(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse the image's /etc/passwd: %w", err)
	}
	return users, nil
}

func parseGroup(b []byte) ([]user.Group, error) {
	if b == nil {
		return nil, nil
	}
	groups, err := user.ParseGroup(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse the image's /etc/group: %w", err)
	}
	return groups, nil
}

// findUser returns the first match: with duplicate entries the first one wins, as in libc.
func findUser(users []user.User, match func(user.User) bool) *user.User {
	if i := slices.IndexFunc(users, match); i >= 0 {
		return &users[i]
	}
	return nil
}

func isNumeric(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func parseID(kind, s string) (uint32, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 0 || id > math.MaxInt32 {
		return 0, fmt.Errorf("%s id %q out of range: %w", kind, s, errdefs.ErrInvalidArgument)
	}
	return uint32(id), nil
}

func dedupe[T comparable](in []T) []T {
	seen := make(map[T]bool, len(in))
	out := in[:0]
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
