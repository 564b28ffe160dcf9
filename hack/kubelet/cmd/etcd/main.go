// Command etcd is etcd's own main (go.etcd.io/etcd/v3's main.go) inside this
// wrapper module: etcd cannot be `go install`ed because its go.mod has
// replace directives, but its etcdmain package builds as a plain dependency.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
