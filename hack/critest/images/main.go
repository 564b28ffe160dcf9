// Command images serves stand-ins for every image critest (cri-tools v1.37.0) pulls, and with
// --agnhost those e2e.test (kubernetes v1.37.2) pulls (e2e.go), from a registry on 127.0.0.1,
// under the upstream repository paths, and writes hosts.toml mirrors.
//
//	go run ./hack/critest/images [--addr 127.0.0.1:0] [--pidfile F] [--certs-dir DIR] [--manifest F] [--go go | --nnp FILE] [--write-nnp FILE] [--agnhost FILE]
//	go run ./hack/critest/images --list
//
// registry.k8s.io/e2e-test-images/busybox:1.29-2 is served as ADDR/e2e-test-images/busybox:1.29-2,
// docker.io/library/busybox as ADDR/library/busybox; with --certs-dir, DIR/<host>/hosts.toml
// points each upstream registry at ADDR. It prints "serving on ADDR" once everything is
// pushed and runs until SIGTERM or SIGINT.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/berth-runtime/berth/test/fixture"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "critest-images:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on (port 0 picks one)")
	pidfile := fs.String("pidfile", "", "write the pid here once serving")
	certsDir := fs.String("certs-dir", "", "write <host>/hosts.toml mirrors pointing at the registry here")
	manifest := fs.String("manifest", "", "write a JSON list of served images (refs, mirror refs, digest) here")
	goBin := fs.String("go", "go", "go tool used to build the nonewprivs helper")
	nnpFile := fs.String("nnp", "", "use this prebuilt nonewprivs helper instead of building it (a node without Go)")
	writeNNP := fs.String("write-nnp", "", "build the nonewprivs helper into this file and exit")
	list := fs.Bool("list", false, "print the catalogue and exit")
	agnhost := fs.String("agnhost", "", "also serve the e2e.test images, agnhost built from this binary "+
		"(its porter certificate in "+agnhostPorterDir+"/ beside it)")
	etcd := fs.String("etcd", "", "with --agnhost: the etcd binary, served as e2e.test's etcd image")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*agnhost == "") != (*etcd == "") {
		return fmt.Errorf("--agnhost and --etcd go together (e2e.test's images need both)")
	}
	var nnp []byte
	var err error
	if *nnpFile != "" {
		nnp, err = os.ReadFile(*nnpFile)
	} else {
		nnp, err = buildNNP(*goBin)
	}
	if err != nil {
		return err
	}
	if *writeNNP != "" {
		return os.WriteFile(*writeNNP, nnp, 0o755)
	}
	imgs, err := allImages(new(fixture.Builder), nnp, e2eBinaries{Agnhost: *agnhost, Etcd: *etcd})
	if err != nil {
		return err
	}
	if *list {
		return printCatalogue(stdout, imgs)
	}
	reg, err := fixture.StartRegistry(*addr)
	if err != nil {
		return err
	}
	defer reg.Close()
	served, err := pushAll(reg, imgs)
	if err != nil {
		return err
	}
	if *certsDir != "" {
		if err := WriteMirrors(*certsDir, reg.Addr()); err != nil {
			return err
		}
	}
	if *manifest != "" {
		b, _ := json.MarshalIndent(served, "", "  ")
		if err := os.WriteFile(*manifest, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write manifest: %w", err)
		}
	}
	s, err := reg.ServeUntilSignal(*pidfile, stdout)
	if s != nil {
		fmt.Fprintf(os.Stderr, "critest-images: %s, stopping\n", s)
	}
	return err
}

// allImages is critest's catalogue, and e2e.test's when e2e names its binaries.
func allImages(b *fixture.Builder, nnp []byte, e2e e2eBinaries) ([]Image, error) {
	imgs, err := catalogue(b, nnp)
	if err != nil || e2e.Agnhost == "" {
		return imgs, err
	}
	more, err := e2eCatalogue(b, e2e, nnp)
	if err != nil {
		return nil, err
	}
	imgs = append(imgs, more...)
	return imgs, checkPaths(imgs)
}

// Served is one catalogue image as pushed.
type Served struct {
	Refs    []string `json:"refs"`    // upstream names
	Mirrors []string `json:"mirrors"` // the same on the loopback registry
	Digest  string   `json:"digest"`  // manifest digest
	How     string   `json:"how"`
}

func pushAll(reg *fixture.Registry, imgs []Image) ([]Served, error) {
	out := make([]Served, 0, len(imgs))
	for _, im := range imgs {
		d, err := im.img.Digest()
		if err != nil {
			return nil, fmt.Errorf("digest of %s: %w", im.Refs[0], err)
		}
		s := Served{Refs: im.Refs, Digest: d.String(), How: im.How}
		for _, ref := range im.Refs {
			p, err := mirrorPath(ref)
			if err != nil {
				return nil, err
			}
			full, err := reg.Push(p, im.img)
			if err != nil {
				return nil, err
			}
			s.Mirrors = append(s.Mirrors, full)
		}
		out = append(out, s)
	}
	return out, nil
}

func printCatalogue(w io.Writer, imgs []Image) error {
	for _, im := range imgs {
		d, err := im.img.Digest()
		if err != nil {
			return err
		}
		for _, ref := range im.Refs {
			fmt.Fprintf(w, "%s\t%s\t%s\n", ref, d, im.How)
		}
	}
	for _, u := range PinnedRefs() {
		fmt.Fprintf(w, "%s\tUNREPRODUCIBLE\t%s\n", u.Ref, u.Why)
	}
	return nil
}
