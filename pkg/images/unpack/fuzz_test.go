package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// applyTimeout bounds one Apply of a fuzz input (a few KiB): anything slower is a hang.
const applyTimeout = 20 * time.Second

// FuzzApply unpacks arbitrary layers into base/root beside a sentinel tree base/outside and
// checks that Apply returns (an error is fine) within applyTimeout, and that nothing outside
// root changed: no entry created beside root, and every file and directory of the sentinel
// tree keeps its content, mode, owner, link count, times and xattrs; and that the file content
// written is no bigger than the layer (a sparse entry would expand). Relative symlinks and
// hardlinks into ../outside are reachable from the seeds.
//
// An input whose first byte is 'R' is the raw tar stream that follows it (malformed headers,
// sizes, PAX and GNU extensions); any other input is a line-based layer description turned
// into a well-formed tar by buildFuzzTar (type, name, link, body, mode, device numbers,
// whiteouts and opaque markers arranged in any order).
func FuzzApply(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("needs root: chown, mknod, trusted xattrs")
	}
	for _, s := range []string{
		"d|./\nd|etc/|||750\nf|etc/passwd||root:x:0:0\nl|etc/link|/etc/passwd\nh|etc/hard|etc/passwd\n",
		"c|dev/null|||666|1|3\nb|dev/sda|||660|8|0\np|run/fifo|||600\n",
		"f|replace||file first\nd|replace/\nf|replace/inner||now a dir\n",
		"d|a/\nf|a/x||1\nf|a/.wh.x\nf|a/.wh..wh..opq\nf|.wh.a\n",
		"l|link|../outside\nf|link/pwned||x\n",
		"d|a/\nl|a/b|../../outside\nf|a/b/c/pwned||x\n",
		"h|h|../outside/victim\n",
		"f|../outside/pwned||x\n",
		"f|/abs||x\n",
		"l|x|../outside/d\nh|y|x\n",
		"d|x/\nd|x/d/\nl|x|../outside\n",
		"d|x/\nd|x/d/\nf|x||now a file\n",
		"d|x/\nd|x/d/\nf|.wh.x\n",
		"l|s|../outside/victim\nf|s||through\n",
		"l|s|../outside/d\nd|s/\n",
		"f|big||" + strings.Repeat("z", 3000) + "\n",
		"f|setuid||x|4755\nf|x/attr||x|||||user.k=v\n",
	} {
		f.Add([]byte(s))
		f.Add(append([]byte{'R'}, buildFuzzTar([]byte(s))...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		layer := data
		if len(data) > 0 && data[0] == 'R' {
			layer = data[1:]
		} else {
			layer = buildFuzzTar(data)
		}
		base := t.TempDir()
		root := filepath.Join(base, "root")
		outside := filepath.Join(base, "outside")
		makeSentinel(t, root, outside)
		before := snapshot(t, base, outside)

		ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := Apply(ctx, root, bytes.NewReader(layer))
			done <- err
		}()
		select {
		case <-done:
		case <-time.After(applyTimeout + 5*time.Second):
			t.Fatalf("Apply did not return within %s", applyTimeout)
		}
		after := snapshot(t, base, outside)
		if before != after {
			t.Fatalf("Apply changed things outside the snapshot dir:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if n := contentBytes(t, root); n > int64(len(layer)) {
			t.Fatalf("a %d-byte layer put %d bytes of file content on disk", len(layer), n)
		}
	})
}

// makeSentinel creates the (empty) root and a tree beside it that a layer must not touch.
func makeSentinel(t *testing.T, root, outside string) {
	t.Helper()
	for _, d := range []string{root, filepath.Join(outside, "d", "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"victim", "d/file", "d/sub/file"} {
		if err := os.WriteFile(filepath.Join(outside, p), []byte("sentinel "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Unix(1_000_000_000, 0)
	err := filepath.WalkDir(outside, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot describes base's entries and everything under outside: any write, chmod, chown,
// link, utimes or setxattr outside root changes it (ctime, not atime: the snapshot reads files).
func snapshot(t *testing.T, base, outside string) string {
	t.Helper()
	var b strings.Builder
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fmt.Fprintf(&b, "base: %s\n", e.Name())
	}
	err = filepath.WalkDir(outside, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s mode=%o uid=%d gid=%d nlink=%d size=%d rdev=%d mtime=%d.%d ctime=%d.%d",
			p, st.Mode, st.Uid, st.Gid, st.Nlink, st.Size, st.Rdev, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " sha256=%x", sha256.Sum256(data))
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
			fmt.Fprintf(&b, " xattrs=%q", buf[:n])
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err != nil {
		fmt.Fprintf(&b, "walk: %v\n", err)
	}
	return b.String()
}

// buildFuzzTar turns lines of "type|name|link|body|mode|major|minor|xattr=value" into a tar.
// type is one of d f l h c b p (dir, file, symlink, hardlink, char, block, fifo); missing
// fields are empty or zero. Malformed numbers are zero so that every input yields a layer.
func buildFuzzTar(desc []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	types := map[byte]byte{'d': tar.TypeDir, 'f': tar.TypeReg, 'l': tar.TypeSymlink, 'h': tar.TypeLink,
		'c': tar.TypeChar, 'b': tar.TypeBlock, 'p': tar.TypeFifo}
	for _, line := range strings.Split(string(desc), "\n") {
		fields := strings.SplitN(line, "|", 8)
		for len(fields) < 8 {
			fields = append(fields, "")
		}
		if fields[0] == "" || fields[1] == "" {
			continue
		}
		typ, ok := types[fields[0][0]]
		if !ok {
			typ = fields[0][0]
		}
		num := func(s string, b int) int64 {
			v, _ := strconv.ParseInt(s, b, 64)
			return v
		}
		hdr := &tar.Header{
			Name: fields[1], Linkname: fields[2], Typeflag: typ, Mode: num(fields[4], 8),
			Devmajor: num(fields[5], 10) & 0xfff, Devminor: num(fields[6], 10) & 0xfffff,
			ModTime: time.Unix(1_600_000_000, 0), Format: tar.FormatPAX,
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(fields[3]))
		}
		if k, v, ok := strings.Cut(fields[7], "="); ok {
			hdr.PAXRecords = map[string]string{paxXattrPrefix + k: v}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			continue // the tar writer refuses it: not a layer anyone can send
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(fields[3]))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// contentBytes sums the sizes of the regular files under root, each inode once: file content
// comes from the layer, so it can never exceed the layer's size.
func contentBytes(t *testing.T, root string) int64 {
	t.Helper()
	seen := map[uint64]bool{}
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if !seen[st.Ino] {
			seen[st.Ino] = true
			total += st.Size
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}
