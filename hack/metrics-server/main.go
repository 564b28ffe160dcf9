// Command metrics-server is upstream's metrics-server (sigs.k8s.io/metrics-server, its
// cmd/metrics-server main) built by hack/cluster.sh, which runs it on the node as a host
// process behind the metrics.k8s.io APIService. It lives in a module of its own so that its
// dependencies (its k8s.io/apiserver, prometheus) do not move the versions the Kubernetes
// components are built with in hack/kubelet.
package main

import (
	"os"
	"runtime"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/logs"

	"sigs.k8s.io/metrics-server/cmd/metrics-server/app"
)

func main() {
	logs.InitLogs()
	defer logs.FlushLogs()

	// Upstream's main does this: an unset GOMAXPROCS means every CPU.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.NumCPU())
	}

	cmd := app.NewMetricsServerCommand(genericapiserver.SetupSignalHandler())
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
}
