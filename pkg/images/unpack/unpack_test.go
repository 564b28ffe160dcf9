package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type entry struct {
	name, link, body string
	typ              byte
	mode             int64
	uid, gid         int
	major, minor     int64
	xattrs           map[string]string
	mtime            time.Time
}

func buildTar(t *testing.T, entries []entry) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		mtime := e.mtime
		if mtime.IsZero() {
			mtime = time.Unix(1_600_000_000, 0)
		}
		hdr := &tar.Header{
			Name: e.name, Linkname: e.link, Typeflag: typ, Mode: mode, Uid: e.uid, Gid: e.gid,
			Devmajor: e.major, Devminor: e.minor, ModTime: mtime, Format: tar.FormatPAX,
		}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if len(e.xattrs) > 0 {
			hdr.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				hdr.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown, mknod, trusted xattrs")
	}
}

func TestApplyFileTypes(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	dirTime := time.Unix(1_500_000_000, 0)
	fileTime := time.Unix(1_400_000_000, 0)
	_, err := Apply(context.Background(), root, buildTar(t, []entry{
		{name: "./", typ: tar.TypeDir},
		{name: "etc/", typ: tar.TypeDir, mode: 0o750, mtime: dirTime},
		{name: "etc/passwd", body: "root:x:0:0\n", mode: 0o640, uid: 1000, gid: 1001, mtime: fileTime},
		{name: "bin/su", body: "suid", mode: 0o4755},
		{name: "etc/link", typ: tar.TypeSymlink, link: "/etc/passwd", uid: 7, gid: 8},
		{name: "etc/hard", typ: tar.TypeLink, link: "etc/passwd"},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660, major: 8, minor: 0},
		{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
		{name: "x/attr", body: "x", xattrs: map[string]string{"user.k": "v", "trusted.overlay.opaque": "y"}},
		{name: "replace", body: "file first"},
		{name: "replace/", typ: tar.TypeDir},
		{name: "replace/inner", body: "now a dir"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	stat := func(p string) *unix.Stat_t {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	tests := []struct {
		name     string
		path     string
		fileType uint32
		perm     uint32
		uid, gid uint32
		rdev     uint64
	}{
		{name: "dir mode", path: "etc", fileType: unix.S_IFDIR, perm: 0o750},
		{name: "file owner and mode", path: "etc/passwd", fileType: unix.S_IFREG, perm: 0o640, uid: 1000, gid: 1001},
		{name: "setuid kept after chown", path: "bin/su", fileType: unix.S_IFREG, perm: 0o4755},
		{name: "symlink lchown", path: "etc/link", fileType: unix.S_IFLNK, perm: 0o777, uid: 7, gid: 8},
		{name: "char device", path: "dev/null", fileType: unix.S_IFCHR, perm: 0o666, rdev: unix.Mkdev(1, 3)},
		{name: "block device", path: "dev/sda", fileType: unix.S_IFBLK, perm: 0o660, rdev: unix.Mkdev(8, 0)},
		{name: "fifo", path: "run/fifo", fileType: unix.S_IFIFO, perm: 0o600},
		{name: "file replaced by dir", path: "replace", fileType: unix.S_IFDIR, perm: 0o755},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := stat(tt.path)
			if st.Mode&unix.S_IFMT != tt.fileType || st.Mode&0o7777 != tt.perm {
				t.Errorf("mode = %o, want type %o perm %o", st.Mode, tt.fileType, tt.perm)
			}
			if st.Uid != tt.uid || st.Gid != tt.gid {
				t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, tt.uid, tt.gid)
			}
			if st.Rdev != tt.rdev {
				t.Errorf("rdev = %d, want %d", st.Rdev, tt.rdev)
			}
		})
	}
	if got, _ := os.Readlink(filepath.Join(root, "etc/link")); got != "/etc/passwd" {
		t.Errorf("symlink target = %q", got)
	}
	if a, b := stat("etc/passwd"), stat("etc/hard"); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hardlink: inodes %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if st := stat("etc"); st.Mtim.Sec != dirTime.Unix() {
		t.Errorf("dir mtime = %d, want %d (must be set after its children)", st.Mtim.Sec, dirTime.Unix())
	}
	if st := stat("etc/passwd"); st.Mtim.Sec != fileTime.Unix() {
		t.Errorf("file mtime = %d, want %d", st.Mtim.Sec, fileTime.Unix())
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(root, "x/attr"), "user.k", buf); err != nil || string(buf[:n]) != "v" {
		t.Errorf("xattr user.k = %q, %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(root, "x/attr"), "trusted.overlay.opaque", buf); err == nil {
		t.Errorf("a layer planted a trusted.overlay xattr")
	}
}

func TestApplyWhiteouts(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	_, err := Apply(context.Background(), root, buildTar(t, []entry{
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/.wh.removed"},
		{name: "opq/", typ: tar.TypeDir},
		{name: "opq/.wh..wh..opq"},
		{name: "opq/kept", body: "k"},
		{name: "same/file", body: "earlier in this layer"},
		{name: "same/.wh.file"},
		{name: "implicit/deep/.wh.gone"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/removed", "same/file", "implicit/deep/gone"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatalf("whiteout %s: %v", p, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("whiteout %s: mode %o rdev %d, want 0/0 char device", p, st.Mode, st.Rdev)
		}
	}
	for _, p := range []string{"etc/.wh.removed", "opq/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s should not exist in overlay form: %v", p, err)
		}
	}
	buf := make([]byte, 4)
	n, err := unix.Lgetxattr(filepath.Join(root, "opq"), "trusted.overlay.opaque", buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque xattr = %q, %v", buf[:n], err)
	}
	if _, err := os.Stat(filepath.Join(root, "opq/kept")); err != nil {
		t.Errorf("file next to opaque marker: %v", err)
	}
}

// TestApplyBreakout feeds malicious tars; each must fail and leave the sibling directory
// (standing in for the rest of the host) untouched.
func TestApplyBreakout(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries func(outside string) []entry
	}{
		{name: "absolute path", entries: func(o string) []entry {
			return []entry{{name: filepath.Join(o, "pwned"), body: "x"}}
		}},
		{name: "dot dot", entries: func(string) []entry { return []entry{{name: "../outside/pwned", body: "x"}} }},
		{name: "dot dot in the middle", entries: func(string) []entry { return []entry{{name: "a/../../outside/pwned", body: "x"}} }},
		{name: "write through absolute symlink", entries: func(o string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: o}, {name: "link/pwned", body: "x"}}
		}},
		{name: "write through relative symlink", entries: func(string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: "../outside"}, {name: "link/pwned", body: "x"}}
		}},
		{name: "nested symlink dir", entries: func(o string) []entry {
			return []entry{{name: "a/", typ: tar.TypeDir}, {name: "a/b", typ: tar.TypeSymlink, link: "../../outside"}, {name: "a/b/c/pwned", body: "x"}}
		}},
		{name: "dir replaced by symlink after use", entries: func(o string) []entry {
			return []entry{{name: "d/", typ: tar.TypeDir}, {name: "d/f", body: "ok"}, {name: "d", typ: tar.TypeSymlink, link: o}, {name: "d/pwned", body: "x"}}
		}},
		{name: "hardlink to host file", entries: func(o string) []entry {
			return []entry{{name: "h", typ: tar.TypeLink, link: filepath.Join(o, "victim")}}
		}},
		{name: "hardlink dot dot", entries: func(string) []entry {
			return []entry{{name: "h", typ: tar.TypeLink, link: "../outside/victim"}}
		}},
		{name: "hardlink through symlink", entries: func(o string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: o}, {name: "h", typ: tar.TypeLink, link: "link/victim"}}
		}},
		{name: "whiteout through symlink", entries: func(o string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: o}, {name: "link/.wh.victim"}}
		}},
		{name: "opaque through symlink", entries: func(o string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: o}, {name: "link/.wh..wh..opq"}}
		}},
		{name: "whiteout of dot dot", entries: func(string) []entry { return []entry{{name: ".wh..."}} }},
		{name: "device through symlink", entries: func(o string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: o}, {name: "link/null", typ: tar.TypeChar, major: 1, minor: 3}}
		}},
		{name: "dir through symlink", entries: func(o string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: o}, {name: "link/newdir/", typ: tar.TypeDir}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			outside := filepath.Join(base, "outside")
			for _, d := range []string{root, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			victim := filepath.Join(outside, "victim")
			if err := os.WriteFile(victim, []byte("host"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Apply(context.Background(), root, buildTar(t, tt.entries(outside)))
			if err == nil {
				t.Fatal("Apply succeeded on a malicious tar")
			}
			if !errors.Is(err, ErrBreakout) && tt.name != "whiteout of dot dot" {
				t.Errorf("err = %v, want ErrBreakout", err)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 || ents[0].Name() != "victim" {
				t.Errorf("outside dir changed: %v", ents)
			}
			var st unix.Stat_t
			if err := unix.Lstat(victim, &st); err != nil || st.Nlink != 1 || st.Mode&unix.S_IFMT != unix.S_IFREG {
				t.Errorf("victim touched: %+v %v", st, err)
			}
			if _, err := unix.Lgetxattr(outside, "trusted.overlay.opaque", make([]byte, 4)); err == nil {
				t.Errorf("opaque xattr set outside")
			}
		})
	}
}

// TestApplyReplacedDirTimes: directory times are applied after the last entry, so a
// directory that a later entry replaces (a file, a symlink, a whiteout) must take its
// subdirectories' pending times with it. Otherwise the final utimes runs on a path below a
// file (failing a valid layer) or below a symlink (changing times outside the snapshot).
// Found by FuzzApply.
func TestApplyReplacedDirTimes(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name        string
		replacement entry
	}{
		{name: "replaced by a symlink out of the root", replacement: entry{name: "x", typ: tar.TypeSymlink, link: "../outside"}},
		{name: "replaced by a file", replacement: entry{name: "x", body: "now a file"}},
		{name: "whited out", replacement: entry{name: ".wh.x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			outsideDir := filepath.Join(base, "outside", "d")
			for _, d := range []string{root, outsideDir} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			old := time.Unix(1_000_000_000, 0)
			if err := os.Chtimes(outsideDir, old, old); err != nil {
				t.Fatal(err)
			}
			_, err := Apply(context.Background(), root, buildTar(t, []entry{
				{name: "x/", typ: tar.TypeDir},
				{name: "x/d/", typ: tar.TypeDir},
				tt.replacement,
			}))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			fi, err := os.Stat(outsideDir)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.ModTime().Equal(old) {
				t.Errorf("mtime of %s outside the root changed to %v", outsideDir, fi.ModTime())
			}
		})
	}
}

// sparseTar is a PAX (GNU sparse 1.0) layer holding one file "big" of realSize bytes, all a
// hole but the last byte: a few KiB of tar that a reader expands to realSize bytes. Go's tar
// writer refuses to write sparse files, so the headers are built by hand.
func sparseTar(t *testing.T, realSize int64) []byte {
	t.Helper()
	record := func(k, v string) string {
		s := " " + k + "=" + v + "\n"
		for n := len(s); ; n++ { // the length prefix counts itself
			if r := fmt.Sprintf("%d%s", n, s); len(r) == n {
				return r
			}
		}
	}
	header := func(name string, typ byte, size int) []byte {
		h := make([]byte, 512)
		copy(h, name)
		for off, v := range map[int]string{100: "0000644", 108: "0000000", 116: "0000000", 136: "00000000000"} {
			copy(h[off:], v)
		}
		copy(h[124:], fmt.Sprintf("%011o", size))
		h[156] = typ
		copy(h[257:], "ustar\x0000")
		copy(h[148:], "        ")
		sum := 0
		for _, b := range h {
			sum += int(b)
		}
		copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
		return h
	}
	block := func(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }
	pax := record("GNU.sparse.major", "1") + record("GNU.sparse.minor", "0") +
		record("GNU.sparse.name", "big") + record("GNU.sparse.realsize", strconv.FormatInt(realSize, 10))
	// The data starts with the sparse map (one region: the last byte), padded to a block.
	data := append(block([]byte(fmt.Sprintf("1\n%d\n1\n", realSize-1))), 'x')
	var out []byte
	out = append(out, header("PaxHeaders/big", tar.TypeXHeader, len(pax))...)
	out = append(out, block([]byte(pax))...)
	out = append(out, header("big", tar.TypeReg, len(data))...)
	out = append(out, block(data)...)
	return append(out, make([]byte, 1024)...)
}

// TestApplyRefusesSparse: a sparse entry's size is not backed by bytes of the layer, so a
// small layer could fill the disk (1 KiB of tar -> 1 TiB of zeros written out). Sparse files
// are refused; nothing of the entry is written.
func TestApplyRefusesSparse(t *testing.T) {
	requireRoot(t)
	const size = 64 << 20
	layer := sparseTar(t, size)
	hdr, err := tar.NewReader(bytes.NewReader(layer)).Next()
	if err != nil || hdr.Name != "big" || hdr.Size != size {
		t.Fatalf("test layer is not a sparse %d-byte file: %+v, %v", size, hdr, err)
	}
	root := t.TempDir()
	_, err = Apply(context.Background(), root, bytes.NewReader(layer))
	if err == nil {
		t.Fatal("Apply accepted a sparse file")
	}
	if !strings.Contains(err.Error(), "big") || !strings.Contains(err.Error(), "sparse") {
		t.Errorf("error %q does not name the entry and the reason", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "big")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sparse entry written: %v", err)
	}
}
