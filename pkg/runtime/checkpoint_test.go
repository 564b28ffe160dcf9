package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-runtime/berth/pkg/runtime/runtimetest"
)

func TestCheckpointRefusals(t *testing.T) {
	e := newTestManager(t)
	created, _ := e.create(t, "ckpt-created", []string{"sleep", "1000"})
	tty, _ := e.create(t, "ckpt-tty", []string{"sleep", "1000"}, withTty())
	if err := e.m.Start(tty); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := CheckpointOptions{ImagesDir: filepath.Join(dir, "images"), WorkDir: dir}
	tests := []struct {
		name string
		id   string
		opts CheckpointOptions
		want func(error) bool
	}{
		{"unknown", "nosuch", opts, errdefs.IsNotFound},
		{"not started", created, opts, errdefs.IsFailedPrecondition},
		{"tty", tty, opts, errdefs.IsFailedPrecondition},
		{"no directories", created, CheckpointOptions{}, errdefs.IsInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.m.Checkpoint(context.Background(), tt.id, tt.opts)
			if !tt.want(err) {
				t.Fatalf("err = %v", err)
			}
			if runtimetest.Exists(opts.ImagesDir) {
				t.Error("CRIU ran: the images directory exists")
			}
		})
	}
}

// createForRestore creates a container pending a restore from imagesDir.
func (e *testEnv) createForRestore(t *testing.T, name, imagesDir string) string {
	t.Helper()
	id := name + "-" + strconv.Itoa(os.Getpid())
	spec := runtimetest.Spec([]string{"sleep", "1000"}, runtimetest.CgroupPath(t, id))
	co := CreateOptions{ID: id, LogPath: filepath.Join(e.root, id+".log"), RestoreImages: imagesDir, RestoreWork: t.TempDir()}
	co.Bundle = runtimetest.Bundle(t, spec)
	if _, err := e.m.Create(co); err != nil {
		t.Fatalf("create %s for restore: %v", id, err)
	}
	if st, _ := e.m.State(id); st.Status != StatusCreated || st.Pid != 0 {
		t.Fatalf("pending restore state = %+v; want created without a process", st)
	}
	return id
}

// A container pending a restore has no process: Kill and Delete stop it through the
// abandon path, and Delete removes its libcontainer state.
func TestPendingRestoreStops(t *testing.T) {
	for _, how := range []string{"kill", "delete"} {
		t.Run(how, func(t *testing.T) {
			e := newTestManager(t)
			id := e.createForRestore(t, "pending-"+how, t.TempDir())
			if how == "kill" {
				if err := e.m.Kill(id, syscall.SIGKILL, true); err != nil {
					t.Fatal(err)
				}
				if st := e.wait(t, id); st.Status != StatusStopped || st.ExitCode != 255 || st.Message == "" {
					t.Fatalf("after kill: %+v", st)
				}
			}
			if err := e.m.Delete(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			if runtimetest.Exists(filepath.Join(e.m.opts.Root, id)) {
				t.Error("libcontainer state left behind")
			}
		})
	}
}

// A restore from images CRIU cannot use fails Start with an error and leaves the container
// stopped, with the failure as its message, so that it can be deleted.
func TestFailedRestoreStopsContainer(t *testing.T) {
	e := newTestManager(t)
	id := e.createForRestore(t, "badrestore", t.TempDir())
	if err := e.m.Start(id); err == nil {
		t.Fatal("restore from an empty images directory succeeded")
	}
	st := e.wait(t, id)
	if st.Status != StatusStopped || st.Message == "" {
		t.Fatalf("after a failed restore: %+v", st)
	}
	if err := e.m.Start(id); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second start: %v; want failed precondition", err)
	}
	if err := e.m.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}
