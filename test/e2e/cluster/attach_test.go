package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// attachPod is a pod whose one container keeps stdin open (and, with tty, has a terminal).
func attachPod(name, extra, cmd string) string {
	return `apiVersion: v1
kind: Pod
metadata: {name: ` + name + `}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: ` + busybox + `
    command: [sh, -c, '` + cmd + `']
    stdin: true
` + extra
}

func applyAndWait(t *testing.T, ns, manifest, name string) {
	t.Helper()
	mustKubectlIn(t, manifest, "-n", ns, "apply", "-f", "-")
	if _, err := kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=120s"); err != nil {
		desc, _ := kubectl(t, "-n", ns, "describe", "pod", name)
		t.Fatalf("%v\n%s", err, desc)
	}
}

// TestAttach: kubectl attach to a running container's main process, over both transports:
// without a terminal, stdin reaches the process and its output comes back, and the end of
// stdin closes the container's (stdinOnce) so that it finishes; with a terminal, typed
// commands run in the container's shell and the client's terminal size reaches it.
func TestAttach(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	for _, tr := range transports {
		t.Run(tr.name+"/stdin", func(t *testing.T) {
			name := "in-" + tr.name
			applyAndWait(t, ns, attachPod(name, "    stdinOnce: true\n",
				`while read l; do echo "got $l"; done; echo stdin closed`), name)
			out, err := kubectlEnv(t, tr.env, "one\ntwo\n", "-n", ns, "attach", "-i", name)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "got one\ngot two\n") || !strings.Contains(out, "stdin closed") {
				t.Fatalf("attach output %q, want both lines echoed and the end of stdin seen", out)
			}
			waitPodPhase(t, ns, name, "Succeeded")
		})
		t.Run(tr.name+"/tty", func(t *testing.T) {
			name := "tty-" + tr.name
			applyAndWait(t, ns, attachPod(name, "    tty: true\n", "exec sh"), name)
			// kubectl resizes to the size plus one and then to the size (to redraw a screen):
			// wait for the final size before printing it.
			typed := `i=0; until [ "$(stty size)" = "40 100" ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done; ` +
				`stty size | tr " " x; echo "answer $((6*7))"; exit` + "\r"
			out := onTTY(t, tr.env, "try pressing enter", typed, "-n", ns, "attach", "-it", name)
			t.Logf("tty output: %q", out)
			// "answer 42" comes from the shell's arithmetic, not the terminal's echo of the typing.
			if !strings.Contains(out, "answer 42") {
				t.Errorf("tty output %q: the typed command did not run in the container", out)
			}
			// 40x100, as the typed text never spells it.
			if !strings.Contains(out, "40x100") {
				t.Errorf("tty output %q: want the client's size 40x100 from stty size", out)
			}
			waitPodPhase(t, ns, name, "Succeeded")
		})
	}
}

// waitPodPhase waits for the pod to reach phase.
func waitPodPhase(t *testing.T, ns, name, phase string) {
	t.Helper()
	waitFor(t, time.Minute, "pod "+name+" "+phase, func() error {
		out, err := kubectl(t, "-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}")
		if err != nil {
			return err
		}
		if out != phase {
			return fmt.Errorf("phase %q", out)
		}
		return nil
	})
}
