package cluster_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopy: kubectl cp into a running container and out of it, a file and a directory tree
// each way (kubectl runs tar in the container through exec, stdin one way, stdout the other).
func TestCopy(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	runPod(t, ns, "bb", busybox, stopOnTerm)
	src := t.TempDir()
	blob := make([]byte, 300<<10)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"a.txt":            []byte("alpha\n"),
		"sub/b.bin":        blob,
		"sub/deeper/c.txt": []byte("gamma\n"),
	}
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("into the pod", func(t *testing.T) {
		mustKubectl(t, "-n", ns, "cp", src, "bb:/tmp/in")
		mustKubectl(t, "-n", ns, "cp", filepath.Join(src, "a.txt"), "bb:/tmp/one.txt")
		for name, data := range files {
			if got := podSHA256(t, ns, "/tmp/in/"+name); got != sha(data) {
				t.Errorf("/tmp/in/%s in the pod: sha256 %s, want %s", name, got, sha(data))
			}
		}
		if got := mustKubectl(t, "-n", ns, "exec", "bb", "--", "cat", "/tmp/one.txt"); got != "alpha\n" {
			t.Errorf("/tmp/one.txt in the pod = %q", got)
		}
	})

	t.Run("out of the pod", func(t *testing.T) {
		mustKubectl(t, "-n", ns, "exec", "bb", "--", "sh", "-c",
			"mkdir -p /tmp/out/sub && echo made in the pod > /tmp/out/m.txt && head -c 200000 /dev/urandom > /tmp/out/sub/r.bin")
		want := podSHA256(t, ns, "/tmp/out/sub/r.bin")
		dst := t.TempDir()
		mustKubectl(t, "-n", ns, "cp", "bb:/tmp/out", filepath.Join(dst, "out"))
		mustKubectl(t, "-n", ns, "cp", "bb:/tmp/out/m.txt", filepath.Join(dst, "single.txt"))
		for name, wantData := range map[string]string{"out/m.txt": "made in the pod\n", "single.txt": "made in the pod\n"} {
			if got, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(got) != wantData {
				t.Errorf("%s copied out = %q, %v; want %q", name, got, err, wantData)
			}
		}
		got, err := os.ReadFile(filepath.Join(dst, "out/sub/r.bin"))
		if err != nil || sha(got) != want {
			t.Errorf("out/sub/r.bin copied out: %v, sha256 %s, want %s", err, sha(got), want)
		}
	})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// podSHA256 is sha256sum of a file in pod bb.
func podSHA256(t *testing.T, ns, path string) string {
	t.Helper()
	out := mustKubectl(t, "-n", ns, "exec", "bb", "--", "sha256sum", path)
	sum, _, _ := strings.Cut(out, " ")
	return sum
}
