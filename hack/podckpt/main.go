// Command podckpt calls the CRI's CheckpointPod and RestorePod, which crictl does not have
// (hack/vm/checkpoint-pod-smoke.sh copies it into the VM):
//
//	podckpt --sock S checkpoint POD_ID OUT_DIR CONTAINER_ID...
//	podckpt --sock S restore CHECKPOINT_DIR POD.json CONTAINER.json...
//
// The JSON files are crictl's: a PodSandboxConfig and ContainerConfigs. restore prints the
// new pod's id, then "NAME ID" for each restored container (created, not started).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	sock := flag.String("sock", "/run/berth/berth.sock", "CRI socket")
	timeout := flag.Duration("timeout", 5*time.Minute, "deadline of the call")
	flag.Parse()
	if err := run(*sock, *timeout, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "podckpt:", err)
		os.Exit(1)
	}
}

func run(sock string, timeout time.Duration, args []string) error {
	if len(args) < 4 {
		return errors.New("usage: podckpt [--sock S] checkpoint POD OUT CTR... | restore DIR POD.json CTR.json...")
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	switch args[0] {
	case "checkpoint":
		_, err := rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: args[1], OutputPath: args[2], ContainerIds: args[3:]})
		return err
	case "restore":
		return restore(ctx, rt, args[1], args[2], args[3:])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func restore(ctx context.Context, rt runtimeapi.RuntimeServiceClient, dir, podFile string, ctrFiles []string) error {
	req := &runtimeapi.RestorePodRequest{CheckpointPath: dir, Config: &runtimeapi.PodSandboxConfig{}}
	if err := readJSON(podFile, req.Config); err != nil {
		return err
	}
	for _, f := range ctrFiles {
		c := &runtimeapi.ContainerConfig{}
		if err := readJSON(f, c); err != nil {
			return err
		}
		req.ContainerConfigs = append(req.ContainerConfigs, c)
	}
	resp, err := rt.RestorePod(ctx, req)
	if err != nil {
		return err
	}
	fmt.Println(resp.GetPodSandboxId())
	for _, c := range resp.GetRestoredContainers() {
		fmt.Println(c.GetName(), c.GetContainerId())
	}
	return nil
}

func readJSON(file string, m proto.Message) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, m); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}
