package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
)

const (
	benchLayers       = 5
	benchLayerBytes   = 40 << 20 // 5 x 40 MiB = 200 MiB of file content
	benchFilesInLayer = 40
)

// benchImage builds a 5-layer image of random (incompressible) files, serves it from an
// in-process registry on 127.0.0.1 and returns its reference and uncompressed size.
func benchImage(b *testing.B) (string, int64) {
	b.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	img := empty.Image
	var total int64
	for l := range benchLayers {
		var tarBuf bytes.Buffer
		tw := tar.NewWriter(&tarBuf)
		content := make([]byte, benchLayerBytes/benchFilesInLayer)
		for f := range benchFilesInLayer {
			for i := 0; i+8 <= len(content); i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					content[i+j] = byte(v >> (8 * j))
				}
			}
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("layer%d/file%d", l, f), Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
			tw.Write(content)
		}
		tw.Close()
		total += int64(tarBuf.Len())
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		zw.Write(tarBuf.Bytes())
		zw.Close()
		data := gz.Bytes()
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			b.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			b.Fatal(err)
		}
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	b.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/bench/random:v1"
	r, _ := name.ParseReference(ref, name.Insecure)
	if err := ggcr.Write(r, img); err != nil {
		b.Fatal(err)
	}
	return ref, total
}

// BenchmarkPull pulls and unpacks the image into a fresh store every iteration.
func BenchmarkPull(b *testing.B) {
	ref, total := benchImage(b)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := filepath.Join(b.TempDir(), "images")
		s, err := New(Options{Root: root, MaxConcurrentDownloads: 3})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.Pull(context.Background(), ref, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkPullReference is the floor to compare with: ggcr fetching the same image and
// decompressing every layer to io.Discard, without writing anything.
func BenchmarkPullReference(b *testing.B) {
	ref, total := benchImage(b)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, _ := name.ParseReference(ref, name.Insecure)
		img, err := ggcr.Image(r)
		if err != nil {
			b.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range layers {
			if err := drain(l); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func drain(l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}
