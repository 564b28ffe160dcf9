package kubelet_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The few fields of a core/v1 Pod these tests write and read. The root module
// does not depend on k8s.io/api; a static pod manifest is plain JSON.
type pod struct {
	APIVersion string    `json:"apiVersion,omitempty"`
	Kind       string    `json:"kind,omitempty"`
	Metadata   meta      `json:"metadata"`
	Spec       podSpec   `json:"spec"`
	Status     podStatus `json:"status,omitzero"`
}

type meta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	UID       string            `json:"uid,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

type podSpec struct {
	InitContainers                []container `json:"initContainers,omitempty"`
	Containers                    []container `json:"containers"`
	Volumes                       []volume    `json:"volumes,omitempty"`
	RestartPolicy                 string      `json:"restartPolicy,omitempty"`
	TerminationGracePeriodSeconds *int64      `json:"terminationGracePeriodSeconds,omitempty"`
	ShareProcessNamespace         bool        `json:"shareProcessNamespace,omitempty"`
}

type container struct {
	Name            string        `json:"name"`
	Image           string        `json:"image"`
	ImagePullPolicy string        `json:"imagePullPolicy,omitempty"`
	Command         []string      `json:"command,omitempty"`
	Ports           []port        `json:"ports,omitempty"`
	VolumeMounts    []volumeMount `json:"volumeMounts,omitempty"`
	Resources       *resources    `json:"resources,omitempty"`
	LivenessProbe   *probe        `json:"livenessProbe,omitempty"`
	ReadinessProbe  *probe        `json:"readinessProbe,omitempty"`
}

type port struct {
	ContainerPort int    `json:"containerPort"`
	HostPort      int    `json:"hostPort,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

type volume struct {
	Name     string    `json:"name"`
	EmptyDir *struct{} `json:"emptyDir,omitempty"`
}

type resources struct {
	Limits   map[string]string `json:"limits,omitempty"`
	Requests map[string]string `json:"requests,omitempty"`
}

type probe struct {
	Exec                *execAction `json:"exec"`
	InitialDelaySeconds int         `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int         `json:"periodSeconds,omitempty"`
	TimeoutSeconds      int         `json:"timeoutSeconds,omitempty"`
	FailureThreshold    int         `json:"failureThreshold,omitempty"`
	SuccessThreshold    int         `json:"successThreshold,omitempty"`
}

type execAction struct {
	Command []string `json:"command"`
}

type podStatus struct {
	Phase                 string            `json:"phase,omitempty"`
	QOSClass              string            `json:"qosClass,omitempty"`
	PodIP                 string            `json:"podIP,omitempty"`
	Conditions            []podCondition    `json:"conditions,omitempty"`
	InitContainerStatuses []containerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses     []containerStatus `json:"containerStatuses,omitempty"`
}

type podCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

type containerStatus struct {
	Name         string         `json:"name"`
	Ready        bool           `json:"ready"`
	RestartCount int            `json:"restartCount"`
	ContainerID  string         `json:"containerID,omitempty"` // "<runtime>://<id>"
	State        containerState `json:"state"`
	LastState    containerState `json:"lastState"`
}

type containerState struct {
	Waiting *struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"waiting,omitempty"`
	Running *struct {
		StartedAt time.Time `json:"startedAt"`
	} `json:"running,omitempty"`
	Terminated *struct {
		ExitCode   int       `json:"exitCode"`
		Reason     string    `json:"reason"`
		Message    string    `json:"message"`
		StartedAt  time.Time `json:"startedAt"`
		FinishedAt time.Time `json:"finishedAt"`
	} `json:"terminated,omitempty"`
}

func (s containerState) String() string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Terminated != nil:
		return fmt.Sprintf("terminated(%d %s %s)", s.Terminated.ExitCode, s.Terminated.Reason, s.Terminated.Message)
	case s.Waiting != nil:
		return fmt.Sprintf("waiting(%s %s)", s.Waiting.Reason, s.Waiting.Message)
	}
	return "none"
}

func (p pod) condition(typ string) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status == "True"
		}
	}
	return false
}

func (p pod) container(name string) (containerStatus, bool) {
	for _, c := range append(p.Status.ContainerStatuses, p.Status.InitContainerStatuses...) {
		if c.Name == name {
			return c, true
		}
	}
	return containerStatus{}, false
}

// summary is a one-line status for failure messages.
func (p pod) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s", p.Status.Phase)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s", c.Type, c.Status)
	}
	for _, c := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, " [%s ready=%v restarts=%d %s last=%s]", c.Name, c.Ready, c.RestartCount, c.State, c.LastState)
	}
	return b.String()
}

// runtimeID strips the "<runtime>://" prefix of a kubelet container ID.
func runtimeID(kubeletID string) string {
	if _, id, ok := strings.Cut(kubeletID, "://"); ok {
		return id
	}
	return kubeletID
}

// Builders: newPod("name", withContainer(...)).

type podOption func(*pod)

func newPod(name string, opts ...podOption) pod {
	grace := int64(2)
	p := pod{
		APIVersion: "v1", Kind: "Pod",
		Metadata: meta{Name: name, Namespace: "default", Labels: map[string]string{"berth-e2e": "kubelet"}},
		Spec:     podSpec{RestartPolicy: "Always", TerminationGracePeriodSeconds: &grace},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func withContainer(c container) podOption {
	return func(p *pod) { p.Spec.Containers = append(p.Spec.Containers, c) }
}

func withInitContainer(c container) podOption {
	return func(p *pod) { p.Spec.InitContainers = append(p.Spec.InitContainers, c) }
}

func withEmptyDir(name string) podOption {
	return func(p *pod) { p.Spec.Volumes = append(p.Spec.Volumes, volume{Name: name, EmptyDir: &struct{}{}}) }
}

// shell is a busybox container running script with /bin/sh.
func shell(name, script string) container {
	return container{
		Name: name, Image: env.busybox, ImagePullPolicy: "IfNotPresent",
		Command: []string{"/bin/sh", "-c", script},
	}
}

// runPod writes p as a static pod manifest. Cleanup removes the manifest and
// waits until the kubelet has removed the pod from berth.
func runPod(t *testing.T, p pod) {
	t.Helper()
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(env.kubelet.manifests, p.Metadata.Name+".json")
	// The kubelet ignores dot files: write aside, then rename into place, so
	// that it never reads half a manifest.
	tmp := filepath.Join(env.kubelet.manifests, "."+p.Metadata.Name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removePod(t, p.Metadata.Name) })
}

// removePod deletes the manifest and waits until berth has no sandbox left
// for the pod; the kubelet's container GC removes dead sandboxes about once a minute.
func removePod(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(env.kubelet.manifests, name+".json")); err != nil && !os.IsNotExist(err) {
		t.Error(err)
	}
	if t.Failed() {
		dumpPod(t, name)
	}
	waitFor(t, 3*time.Minute, "kubelet and berth to remove pod "+name, func() (bool, string) {
		_, found, err := env.kubelet.pod(name)
		if err != nil || found {
			return false, fmt.Sprintf("kubelet still lists it (err %v)", err)
		}
		sbs, err := crictlPods(name)
		if err != nil {
			return false, err.Error()
		}
		if len(sbs) > 0 {
			return false, fmt.Sprintf("berth still has sandboxes %v", sbs)
		}
		return true, ""
	})
}

// dumpPod logs what the kubelet and berth said about a pod, for a failed test.
func dumpPod(t *testing.T, name string) {
	t.Helper()
	if p, ok, err := env.kubelet.pod(name); err == nil && ok {
		t.Logf("kubelet /pods: %s", p.summary())
	}
	lines := env.kubelet.logLines(staticName(name))
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	t.Logf("kubelet log lines for %s:\n%s", name, strings.Join(lines, "\n"))
	errs := env.kubelet.criErrors()
	if len(errs) > 10 {
		errs = errs[len(errs)-10:]
	}
	t.Logf("kubelet CRI errors (last 10):\n%s", strings.Join(errs, "\n"))
}

// waitFor polls cond every half second until it holds; on timeout it fails
// the test with the last reason cond gave.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		ok, reason := cond()
		if ok {
			return
		}
		why = reason
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitPod waits until the kubelet's view of pod name satisfies cond and returns it.
func waitPod(t *testing.T, name string, timeout time.Duration, what string, cond func(pod) bool) pod {
	t.Helper()
	var got pod
	waitFor(t, timeout, what, func() (bool, string) {
		p, found, err := env.kubelet.pod(name)
		switch {
		case err != nil:
			return false, err.Error()
		case !found:
			return false, "the kubelet does not list the pod"
		}
		got = p
		return cond(p), p.summary()
	})
	return got
}

func running(name string) func(pod) bool {
	return func(p pod) bool {
		c, ok := p.container(name)
		return ok && c.State.Running != nil
	}
}
