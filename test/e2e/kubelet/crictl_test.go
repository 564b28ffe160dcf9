package kubelet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// crictl runs crictl against the suite's agent: the second view of every pod.
func crictl(args ...string) ([]byte, error) { return crictlRun(false, args...) }

// crictlRun runs crictl; combined adds its stderr to the output, as the
// container's stderr stream of `crictl logs` is written there.
func crictlRun(combined bool, args ...string) ([]byte, error) {
	// Two minutes: crictl alone takes tens of seconds to start under TCG (the VM) on a loaded
	// host; the RPC itself keeps crictl's 30s.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ep := "unix://" + env.agent.sock
	full := append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "30s"}, args...)
	cmd := exec.CommandContext(ctx, env.crictlBin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if combined {
		cmd.Stderr = &stdout
	}
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("crictl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// nanos is a CRI timestamp as crictl prints it: protobuf JSON writes int64 as a string.
type nanos int64

func (n *nanos) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	if err != nil {
		return fmt.Errorf("parse timestamp %s: %w", b, err)
	}
	*n = nanos(v)
	return nil
}

func (n nanos) Time() time.Time { return time.Unix(0, int64(n)) }

type criSandbox struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Metadata struct {
		Name, UID, Namespace string
	} `json:"metadata"`
	Labels map[string]string `json:"labels"`
}

func (s criSandbox) String() string { return s.ID[:min(12, len(s.ID))] + ":" + s.State }

type criContainer struct {
	ID           string `json:"id"`
	PodSandboxID string `json:"podSandboxId"`
	State        string `json:"state"`
	CreatedAt    nanos  `json:"createdAt"`
	Metadata     struct {
		Name    string `json:"name"`
		Attempt int    `json:"attempt"`
	} `json:"metadata"`
}

// crictlPods lists berth's sandboxes of the static pod name, ready or not.
func crictlPods(name string) ([]criSandbox, error) {
	out, err := crictl("pods", "--label", "io.kubernetes.pod.name="+staticName(name), "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []criSandbox `json:"items"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("decode crictl pods: %w: %s", err, out)
	}
	return list.Items, nil
}

// crictlReadyPod returns the pod's one ready sandbox.
func crictlReadyPod(name string) (criSandbox, error) {
	sbs, err := crictlPods(name)
	if err != nil {
		return criSandbox{}, err
	}
	var ready []criSandbox
	for _, s := range sbs {
		if s.State == "SANDBOX_READY" {
			ready = append(ready, s)
		}
	}
	if len(ready) != 1 {
		return criSandbox{}, fmt.Errorf("want one ready sandbox for %s, crictl shows %v", name, sbs)
	}
	return ready[0], nil
}

// crictlContainers lists every container (all states) of a sandbox, named
// name if name is not empty, oldest attempt first.
func crictlContainers(sandboxID, name string) ([]criContainer, error) {
	args := []string{"ps", "-a", "--pod", sandboxID, "-o", "json"}
	if name != "" {
		args = append(args, "--name", "^"+name+"$")
	}
	out, err := crictl(args...)
	if err != nil {
		return nil, err
	}
	var list struct {
		Containers []criContainer `json:"containers"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("decode crictl ps: %w: %s", err, out)
	}
	sort.Slice(list.Containers, func(i, j int) bool {
		return list.Containers[i].Metadata.Attempt < list.Containers[j].Metadata.Attempt
	})
	return list.Containers, nil
}

// criStatus is what crictl inspect prints of a container.
type criStatus struct {
	Status struct {
		ID         string `json:"id"`
		State      string `json:"state"`
		CreatedAt  string `json:"createdAt"`
		StartedAt  string `json:"startedAt"`
		FinishedAt string `json:"finishedAt"`
		ExitCode   int    `json:"exitCode"`
		Reason     string `json:"reason"`
		LogPath    string `json:"logPath"`
	} `json:"status"`
	Info map[string]json.RawMessage `json:"info"`
}

// crictlInspect returns a container's status; its times are RFC 3339 there.
func crictlInspect(id string) (criStatus, error) {
	out, err := crictl("inspect", "-o", "json", id)
	if err != nil {
		return criStatus{}, err
	}
	var st criStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("decode crictl inspect: %w: %s", err, out)
	}
	return st, nil
}

// pid returns the container's host pid from the verbose info, when berth gives it.
func (s criStatus) pid() int {
	var pid int
	if raw, ok := s.Info["pid"]; ok {
		_ = json.Unmarshal(raw, &pid)
	}
	return pid
}

// crictlLogs returns a container's log; previous reads the attempt before it.
func crictlLogs(id string, previous bool) (string, error) {
	args := []string{"logs"}
	if previous {
		args = append(args, "--previous")
	}
	out, err := crictlRun(true, append(args, id)...)
	return string(out), err
}
