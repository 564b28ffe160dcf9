package runtime

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestZombieChildrenFromChildrenFiles: the children files find the same zombies as a scan
// of every process on the node, and only ours.
func TestZombieChildrenFromChildrenFiles(t *testing.T) {
	if _, err := os.Stat("/proc/self/task/" + itoa(syscall.Gettid()) + "/children"); err != nil {
		t.Skip("kernel without CONFIG_PROC_CHILDREN")
	}
	var cmds []*exec.Cmd
	for range 3 {
		c := exec.Command("true")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	t.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Wait()
		}
	})
	var want []int
	for _, c := range cmds {
		want = append(want, c.Process.Pid)
	}
	slices.Sort(want)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := zombieChildren(os.Getpid(), ownChildren())
		slices.Sort(got)
		if slices.Equal(got, want) {
			scan := zombieChildren(os.Getpid(), allPIDs())
			slices.Sort(scan)
			if !slices.Equal(scan, want) {
				t.Fatalf("scan of /proc found zombies %v, want %v", scan, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("zombie children = %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
