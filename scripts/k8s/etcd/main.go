// Command etcd is etcd 3.5 built from its published Go modules (Debian's etcd
// 3.4 is too old for Kubernetes 1.34).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
