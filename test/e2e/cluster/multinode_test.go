package cluster_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// The multi-node scenarios need `hack/cluster.sh up --nodes 3` (BERTH_CLUSTER_NODES=3, as
// make cluster-e2e runs it): the host's node and the node containers berth-node-2 and -3.

// nodeServer is a pod command that serves its own name over HTTP on port 8080 (busybox
// httpd), so that a client tells which pod, and so which node, answered.
const nodeServer = `mkdir -p /www && hostname >/www/index.html && trap "exit 0" TERM; httpd -f -p 8080 -h /www & wait`

// getFrom is a pod command's request to url (busybox nc: its wget crashes in this image).
func getFrom(ip string) string {
	return fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 %s 8080`, ip)
}

// clusterNodes lists the nodes by name, sorted.
func clusterNodes(t *testing.T) []string {
	t.Helper()
	out := mustKubectl(t, "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}")
	names := strings.Fields(out)
	sort.Strings(names)
	return names
}

// needNodes skips t on a cluster of fewer than n nodes and returns the nodes.
func needNodes(t *testing.T, n int) []string {
	t.Helper()
	needCluster(t)
	nodes := clusterNodes(t)
	if len(nodes) < n {
		t.Skipf("needs a cluster of %d nodes, this one has %d (%s): hack/cluster.sh up --nodes %d, "+
			"or BERTH_CLUSTER_NODES=%d for this suite", n, len(nodes), strings.Join(nodes, " "), n, n)
	}
	return nodes
}

// extraNode is the number hack/cluster.sh gives a node container (berth-node-3 is 3), for
// `hack/cluster.sh node N ...`.
func extraNode(t *testing.T, name string) string {
	t.Helper()
	n, ok := strings.CutPrefix(name, nodeName+"-")
	if !ok {
		t.Fatalf("%s is not a node container of hack/cluster.sh", name)
	}
	return n
}

// clusterNode runs `hack/cluster.sh node N op daemon` for one of the node containers.
func clusterNode(t *testing.T, name, op, daemon string) {
	t.Helper()
	out, err := exec.Command(env.script, "node", extraNode(t, name), op, daemon).CombinedOutput()
	if err != nil {
		t.Fatalf("hack/cluster.sh node %s %s %s: %v\n%s", extraNode(t, name), op, daemon, err, out)
	}
}

// mnPod is what the scenarios read of a pod.
type mnPod struct {
	Metadata struct {
		Name              string  `json:"name"`
		DeletionTimestamp *string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		PodIP             string                          `json:"podIP"`
		Conditions        []struct{ Type, Status string } `json:"conditions"`
		ContainerStatuses []struct {
			ContainerID  string `json:"containerID"`
			RestartCount int    `json:"restartCount"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

func (p mnPod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// mnPods lists the pods of ns matching selector (app=<name>).
func mnPods(t *testing.T, ns, selector string) []mnPod {
	t.Helper()
	out := mustKubectl(t, "-n", ns, "get", "pods", "-l", selector, "-o", "json")
	var list struct{ Items []mnPod }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode pods: %v", err)
	}
	return list.Items
}

// waitPods waits until n pods of ns matching selector, none being deleted, are Ready, and
// returns them.
func waitPods(t *testing.T, ns, selector string, n int, timeout time.Duration) []mnPod {
	t.Helper()
	var live []mnPod
	waitFor(t, timeout, fmt.Sprintf("%d Ready pods %s in %s", n, selector, ns), func() error {
		live = live[:0]
		ready := 0
		for _, p := range mnPods(t, ns, selector) {
			if p.Metadata.DeletionTimestamp != nil {
				continue
			}
			live = append(live, p)
			if p.ready() {
				ready++
			}
		}
		if ready != n || len(live) != n {
			return fmt.Errorf("%d pods, %d Ready", len(live), ready)
		}
		return nil
	})
	return live
}

// spread counts pods per node.
func spread(pods []mnPod) map[string]int {
	m := map[string]int{}
	for _, p := range pods {
		m[p.Spec.NodeName]++
	}
	return m
}

// nodeReady tells the node's Ready condition.
func nodeReady(t *testing.T, name string) string {
	t.Helper()
	out, _ := kubectl(t, "get", "node", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	return out
}

// spreadDeployment is a Deployment of replicas serving pods, at most one apart between nodes;
// tolerations (the workload's own) cut the 300 s an unreachable node keeps its pods by default.
func spreadDeployment(name string, replicas int, tolerations string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: %[2]d
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 2
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        nodeTaintsPolicy: Honor
        labelSelector: {matchLabels: {app: %[1]s}}
%[3]s      containers:
      - name: c
        image: %[4]s
        command: [sh, -c, '%[5]s']
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
`, name, replicas, tolerations, busybox, nodeServer)
}

// clientOn starts a busybox pod on node and returns its name.
func clientOn(t *testing.T, ns, node string) string {
	t.Helper()
	name := "client-" + strings.TrimPrefix(node, nodeName+"-")
	over := `{"apiVersion": "v1", "spec": {"nodeName": "` + node + `"}}`
	mustKubectl(t, "-n", ns, "run", name, "--image="+busybox, "--restart=Never", "--overrides="+over,
		"--", "sh", "-c", stopOnTerm)
	if _, err := kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=120s"); err != nil {
		desc, _ := kubectl(t, "-n", ns, "describe", "pod", name)
		t.Fatalf("%v\n%s", err, desc)
	}
	return name
}

// ask has client GET ip:8080 and returns the answering pod's name.
func ask(t *testing.T, ns, client, ip string) (string, error) {
	t.Helper()
	out, err := kubectl(t, "-n", ns, "exec", client, "--", "sh", "-c", getFrom(ip))
	if err != nil {
		return "", err
	}
	if i := strings.Index(out, "\r\n\r\n"); i >= 0 {
		return strings.TrimSpace(out[i+4:]), nil
	}
	return "", fmt.Errorf("GET %s from %s: no HTTP answer: %q", ip, client, out)
}

// TestMultiNodeDaemonSet: a DaemonSet runs one Ready pod on every node.
func TestMultiNodeDaemonSet(t *testing.T) {
	nodes := needNodes(t, 3)
	ns := namespace(t)
	start := time.Now()
	mustKubectlIn(t, fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec:
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - {name: c, image: %s, command: [sh, -c, '%s']}
`, busybox, stopOnTerm), "-n", ns, "apply", "-f", "-")
	pods := waitPods(t, ns, "app=ds", len(nodes), 3*time.Minute)
	got := spread(pods)
	for _, n := range nodes {
		if got[n] != 1 {
			t.Errorf("node %s runs %d pods of the DaemonSet, want 1 (spread %v)", n, got[n], got)
		}
	}
	t.Logf("DaemonSet on %d nodes in %s: %v", len(nodes), time.Since(start).Round(time.Second), got)
}

// TestMultiNodeSpread: a Deployment of 9 replicas with a topology spread constraint runs 3
// pods on each of 3 nodes; a pod reaches a pod on every other node by its IP, and the
// Deployment's ClusterIP Service answers from pods on more than one node.
func TestMultiNodeSpread(t *testing.T) {
	nodes := needNodes(t, 3)
	ns := namespace(t)
	start := time.Now()
	mustKubectlIn(t, spreadDeployment("web", 9, ""), "-n", ns, "apply", "-f", "-")
	pods := waitPods(t, ns, "app=web", 9, 5*time.Minute)
	got := spread(pods)
	t.Logf("9 replicas Ready in %s, per node: %v", time.Since(start).Round(time.Second), got)
	if len(got) != len(nodes) {
		t.Fatalf("the replicas run on %d nodes, want %d: %v", len(got), len(nodes), got)
	}
	for n, c := range got {
		if want := 9 / len(nodes); len(nodes) == 3 && c != want {
			t.Errorf("node %s runs %d replicas, want %d (spread %v)", n, c, want, got)
		}
	}

	// Pod to pod across nodes, by IP: from a client on the host's node and from one on a
	// node container, to one replica on each node.
	byNode := map[string]mnPod{}
	for _, p := range pods {
		byNode[p.Spec.NodeName] = p
	}
	for _, from := range []string{nodes[0], nodes[len(nodes)-1]} {
		client := clientOn(t, ns, from)
		for _, to := range nodes {
			p := byNode[to]
			name, err := ask(t, ns, client, p.Status.PodIP)
			if err != nil || name != p.Metadata.Name {
				t.Errorf("pod on %s to pod %s (%s) on %s: answer %q, %v", from, p.Metadata.Name, p.Status.PodIP, to, name, err)
			}
		}
	}

	// The Service: kube-proxy on the client's node spreads connections over every endpoint.
	mustKubectl(t, "-n", ns, "expose", "deployment", "web", "--port=8080")
	ip := mustKubectl(t, "-n", ns, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	nodeOf := map[string]string{}
	for _, p := range pods {
		nodeOf[p.Metadata.Name] = p.Spec.NodeName
	}
	client := "client-" + strings.TrimPrefix(nodes[len(nodes)-1], nodeName+"-")
	answered := map[string]int{}
	waitFor(t, 2*time.Minute, "the Service answering from more than one node", func() error {
		name, err := ask(t, ns, client, ip)
		if err != nil {
			return err
		}
		node, ok := nodeOf[name]
		if !ok {
			return fmt.Errorf("service %s answered %q, not one of the replicas", ip, name)
		}
		answered[node]++
		if len(answered) < 2 {
			return fmt.Errorf("answers per node %v", answered)
		}
		return nil
	})
	t.Logf("ClusterIP %s answered from nodes %v", ip, answered)
}

// TestMultiNodeBerthKilled: a node's berth killed with SIGKILL and started again: that
// node's pods keep running (same containers, no restart, still serving) and it stays Ready.
func TestMultiNodeBerthKilled(t *testing.T) {
	nodes := needNodes(t, 3)
	node := nodes[1]
	ns := namespace(t)
	over := `{"apiVersion": "v1", "spec": {"nodeName": "` + node + `", "terminationGracePeriodSeconds": 2}}`
	mustKubectl(t, "-n", ns, "run", "srv", "--labels=app=srv", "--image="+busybox, "--restart=Never",
		"--overrides="+over, "--", "sh", "-c", nodeServer)
	before := waitPods(t, ns, "app=srv", 1, 2*time.Minute)[0]
	client := clientOn(t, ns, nodes[0])

	start := time.Now()
	clusterNode(t, node, "kill", "berth")
	clusterNode(t, node, "start", "berth")
	t.Logf("berth of %s killed and started again in %s", node, time.Since(start).Round(100*time.Millisecond))

	// The kubelet notices the runtime only at its next relist or status check: wait for it
	// to have talked to the new berth (the pod's status comes from it) and the node Ready.
	waitFor(t, 2*time.Minute, node+" Ready", func() error {
		if r := nodeReady(t, node); r != "True" {
			return fmt.Errorf("Ready=%q", r)
		}
		return nil
	})
	after := waitPods(t, ns, "app=srv", 1, 2*time.Minute)[0]
	if a, b := after.Status.ContainerStatuses, before.Status.ContainerStatuses; len(a) != 1 || len(b) != 1 ||
		a[0].ContainerID != b[0].ContainerID || a[0].RestartCount != 0 {
		t.Errorf("container before %+v, after %+v: want the same one, not restarted", b, a)
	}
	if name, err := ask(t, ns, client, after.Status.PodIP); err != nil || name != "srv" {
		t.Errorf("pod srv on %s after berth's restart: answer %q, %v", node, name, err)
	}
}

// TestMultiNodeStopped: a node whose kubelet stops goes NotReady and its pods are
// rescheduled on the others; with its kubelet started again it is Ready and the pods it
// kept are gone.
func TestMultiNodeStopped(t *testing.T) {
	nodes := needNodes(t, 3)
	node := nodes[len(nodes)-1]
	ns := namespace(t)
	// The workload's own toleration: evicted 5 s after its node is not-ready/unreachable
	// rather than the default 300 s; the controllers' defaults stay.
	tol := `      tolerations:
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
`
	mustKubectlIn(t, spreadDeployment("web", len(nodes), tol), "-n", ns, "apply", "-f", "-")
	pods := waitPods(t, ns, "app=web", len(nodes), 3*time.Minute)
	if got := spread(pods); got[node] != 1 {
		t.Fatalf("node %s runs %d replicas, want 1: %v", node, got[node], got)
	}

	start := time.Now()
	clusterNode(t, node, "stop", "kubelet")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			clusterNode(t, node, "start", "kubelet")
		}
	})
	waitFor(t, 3*time.Minute, node+" NotReady", func() error {
		if r := nodeReady(t, node); r == "True" {
			return fmt.Errorf("Ready=%q", r)
		}
		return nil
	})
	notReady := time.Since(start)
	moved := waitPods(t, ns, "app=web", len(nodes), 3*time.Minute)
	got := spread(moved)
	if got[node] != 0 {
		t.Errorf("%d live replicas still on %s: %v", got[node], node, got)
	}
	t.Logf("%s NotReady %s after its kubelet stopped; replicas rescheduled after %s: %v", node,
		notReady.Round(time.Second), time.Since(start).Round(time.Second), got)

	clusterNode(t, node, "start", "kubelet")
	restarted = true
	waitFor(t, 3*time.Minute, node+" Ready again", func() error {
		if r := nodeReady(t, node); r != "True" {
			return fmt.Errorf("Ready=%q", r)
		}
		return nil
	})
	// The kubelet back confirms the evicted pod's deletion: it leaves the API.
	waitFor(t, 3*time.Minute, "the evicted pod gone from "+node, func() error {
		for _, p := range mnPods(t, ns, "app=web") {
			if p.Spec.NodeName == node {
				return fmt.Errorf("pod %s still on %s", p.Metadata.Name, node)
			}
		}
		return nil
	})
	t.Logf("%s Ready again, its pods gone, %s after the stop", node, time.Since(start).Round(time.Second))
}
