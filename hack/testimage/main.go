// Command testimage builds berth's busybox test images (test/fixture) and
// serves them from a registry on 127.0.0.1, or writes them as an import tarball.
//
//	go run ./hack/testimage serve --addr 127.0.0.1:5000 [--pidfile F] [--big] [--alias NEW=EXISTING]...
//	    [--auth user:pass] [--tls --ca-out ca.pem] [--manifest pushed.json]
//	go run ./hack/testimage layout --out busybox.tar [--name docker.io/berth/busybox:latest]
//	    [--format oci|docker] [--user 1000] [--multiarch]
//	go run ./hack/testimage checkpoint --archive counter.tar --container counter --out image.tar
//	    [--name localhost/checkpoints/counter:latest]
//
// serve pushes berth/busybox:latest, berth/busybox:nonroot (User 1000),
// berth/multiarch:latest (index) and, with --big, berth/big:latest (~200 MB),
// prints "serving on ADDR" once ready, and runs until SIGTERM or SIGINT;
// --checkpoint REPO:TAG=ARCHIVE also pushes a checkpoint image built from a container
// checkpoint archive. checkpoint writes such an image as an OCI layout tarball instead
// (for `berth images import`).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-runtime/berth/test/fixture"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "layout":
		err = writeLayout(os.Args[2:])
	case "checkpoint":
		err = writeCheckpointImage(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testimage:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testimage serve [--addr 127.0.0.1:5000] [--pidfile F] [--big] [--alias NEW=EXISTING]... [--auth user:pass] [--tls --ca-out F] [--manifest F]")
	fmt.Fprintln(os.Stderr, "       testimage layout --out FILE.tar [--name NAME] [--format oci|docker] [--user U] [--multiarch]")
	fmt.Fprintln(os.Stderr, "       testimage checkpoint --archive CKPT.tar --container NAME --out FILE.tar [--name NAME]")
	os.Exit(2)
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// content is one pushed repository path: exactly one of image or index.
type content struct {
	image v1.Image
	index v1.ImageIndex
}

// standardSet is the manifest of names served by default.
func standardSet(b *fixture.Builder, big bool) (map[string]content, error) {
	set := map[string]content{}
	img, err := b.Busybox()
	if err != nil {
		return nil, err
	}
	set["berth/busybox:latest"] = content{image: img}
	if img, err = b.Busybox(fixture.WithUser(strconv.Itoa(fixture.UIDBerth))); err != nil {
		return nil, err
	}
	set["berth/busybox:nonroot"] = content{image: img}
	idx, err := b.MultiArch()
	if err != nil {
		return nil, err
	}
	set["berth/multiarch:latest"] = content{index: idx}
	if big {
		if img, err = b.Busybox(fixture.WithPadding(5, 200<<20)); err != nil {
			return nil, err
		}
		set["berth/big:latest"] = content{image: img}
	}
	return set, nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:5000", "loopback address to listen on (port 0 picks one)")
	pidfile := fs.String("pidfile", "", "write the pid here once the images are pushed")
	big := fs.Bool("big", false, "also push berth/big:latest (~200 MB in 5 layers)")
	auth := fs.String("auth", "", "require basic auth user:pass")
	manifest := fs.String("manifest", "", "write a JSON map of pushed reference -> digest here")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a fresh self-signed certificate")
	caOut := fs.String("ca-out", "", "with --tls, write the CA certificate (PEM) here")
	var aliases stringList
	fs.Var(&aliases, "alias", "NEW=EXISTING: also push EXISTING (a served name) as NEW; repeatable")
	var ckpts stringList
	fs.Var(&ckpts, "checkpoint", "REPO:TAG=ARCHIVE: also push a checkpoint image of a container checkpoint archive; repeatable")
	_ = fs.Parse(args)

	set, err := standardSet(new(fixture.Builder), *big)
	if err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	if err := addAliases(set, aliases); err != nil {
		return err
	}
	if err := addCheckpoints(set, ckpts); err != nil {
		return err
	}
	var opts []fixture.RegistryOption
	if *auth != "" {
		user, pass, ok := strings.Cut(*auth, ":")
		if !ok {
			return errors.New("--auth wants user:pass")
		}
		opts = append(opts, fixture.WithBasicAuth(user, pass))
	}
	if *useTLS {
		opts = append(opts, fixture.WithTLS())
	}
	reg, err := fixture.StartRegistry(*addr, opts...)
	if err != nil {
		return err
	}
	defer reg.Close()
	if *caOut != "" {
		if err := os.WriteFile(*caOut, reg.CACertPEM(), 0o644); err != nil {
			return fmt.Errorf("write ca: %w", err)
		}
	}

	pushed, err := pushAll(reg, set)
	if err != nil {
		return err
	}
	if *manifest != "" {
		b, _ := json.MarshalIndent(pushed, "", "  ")
		if err := os.WriteFile(*manifest, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write manifest: %w", err)
		}
	}
	s, err := reg.ServeUntilSignal(*pidfile, os.Stdout)
	if s != nil {
		fmt.Fprintf(os.Stderr, "testimage: %s, stopping\n", s)
	}
	return err
}

func addAliases(set map[string]content, aliases []string) error {
	for _, a := range aliases {
		newName, existing, ok := strings.Cut(a, "=")
		if !ok || newName == "" {
			return fmt.Errorf("--alias %q: want NEW=EXISTING", a)
		}
		c, ok := set[existing]
		if !ok {
			return fmt.Errorf("--alias %q: %s is not a served name (have %v)", a, existing, names(set))
		}
		set[newName] = c
	}
	return nil
}

func pushAll(reg *fixture.Registry, set map[string]content) (map[string]string, error) {
	pushed := map[string]string{}
	for _, n := range names(set) {
		c := set[n]
		var ref string
		var d v1.Hash
		var err error
		if c.index != nil {
			ref, err = reg.PushIndex(n, c.index)
			if err == nil {
				d, err = c.index.Digest()
			}
		} else {
			ref, err = reg.Push(n, c.image)
			if err == nil {
				d, err = c.image.Digest()
			}
		}
		if err != nil {
			return nil, err
		}
		pushed[ref] = d.String()
		fmt.Printf("pushed %s %s\n", ref, d)
	}
	return pushed, nil
}

func names(set map[string]content) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func writeLayout(args []string) error {
	fs := flag.NewFlagSet("layout", flag.ExitOnError)
	out := fs.String("out", "", "tarball to write")
	imgName := fs.String("name", "docker.io/berth/busybox:latest", "image name recorded in the archive")
	format := fs.String("format", "oci", "oci (OCI layout tar) or docker (docker save tar)")
	user := fs.String("user", "", "image config User")
	multi := fs.Bool("multiarch", false, "write the multi-platform index instead of the busybox image (oci only)")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("layout: --out is required")
	}
	var opts []fixture.Option
	if *user != "" {
		opts = append(opts, fixture.WithUser(*user))
	}
	if *multi {
		if *format != "oci" {
			return errors.New("layout: --multiarch needs --format oci")
		}
		if !flagSet(fs, "name") {
			*imgName = "docker.io/berth/multiarch:latest"
		}
		idx, err := new(fixture.Builder).MultiArch(opts...)
		if err != nil {
			return fmt.Errorf("build index: %w", err)
		}
		if err := fixture.OCIArchiveIndex(*out, *imgName, idx); err != nil {
			return err
		}
		d, _ := idx.Digest()
		fmt.Printf("wrote %s: %s %s\n", *out, *imgName, d)
		return nil
	}
	img, err := fixture.BuildBusybox(opts...)
	if err != nil {
		return fmt.Errorf("build image: %w", err)
	}
	images := map[string]v1.Image{*imgName: img}
	switch *format {
	case "oci":
		err = fixture.OCIArchive(*out, images)
	case "docker":
		err = fixture.WriteDockerArchive(*out, images)
	default:
		return fmt.Errorf("layout: unknown --format %q", *format)
	}
	if err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s: %s %s\n", *out, *imgName, d)
	return nil
}

// addCheckpoints adds a checkpoint image per REPO:TAG=ARCHIVE, annotated with the repository's
// last path element as the container name.
func addCheckpoints(set map[string]content, specs []string) error {
	for _, spec := range specs {
		ref, archive, ok := strings.Cut(spec, "=")
		if !ok {
			return fmt.Errorf("--checkpoint %q: want REPO:TAG=ARCHIVE", spec)
		}
		repo, _, _ := strings.Cut(ref, ":")
		img, err := fixture.CheckpointImage(archive, path.Base(repo))
		if err != nil {
			return err
		}
		set[ref] = content{image: img}
	}
	return nil
}

func writeCheckpointImage(args []string) error {
	fs := flag.NewFlagSet("checkpoint", flag.ExitOnError)
	archive := fs.String("archive", "", "container checkpoint archive (CheckpointContainer's tar)")
	container := fs.String("container", "", "checkpointed container's name (the annotation's value)")
	out := fs.String("out", "", "OCI layout tarball to write")
	imgName := fs.String("name", "localhost/checkpoints/checkpoint:latest", "image name recorded in the layout")
	_ = fs.Parse(args)
	if *archive == "" || *out == "" || *container == "" {
		return errors.New("checkpoint: --archive, --container and --out are required")
	}
	img, err := fixture.CheckpointImage(*archive, *container)
	if err != nil {
		return err
	}
	if err := fixture.OCIArchive(*out, map[string]v1.Image{*imgName: img}); err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s: %s %s\n", *out, *imgName, d)
	return nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
