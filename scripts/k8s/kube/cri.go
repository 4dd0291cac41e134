package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	remote "k8s.io/cri-client/pkg"
	"k8s.io/klog/v2"
)

// criCleanup implements `kube cri-cleanup --runtime-endpoint unix:///...`:
// stops and removes every pod sandbox and container of a CRI runtime, so that
// their network (CNI DEL) and mounts are torn down properly before the
// runtime itself is stopped. It is what `crictl rmp -af` would do.
func criCleanup(args []string) int {
	fs := flag.NewFlagSet("cri-cleanup", flag.ExitOnError)
	endpoint := fs.String("runtime-endpoint", "", "CRI endpoint, e.g. unix:///run/containerd/containerd.sock")
	timeout := fs.Duration("timeout", 2*time.Minute, "overall timeout")
	_ = fs.Parse(args)
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "cri-cleanup: --runtime-endpoint is required")
		return 2
	}
	logger := klog.Background()
	rs, err := remote.NewRemoteRuntimeService(*endpoint, 30*time.Second, nil, &logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-cleanup: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rc := 0
	sandboxes, err := rs.ListPodSandbox(ctx, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-cleanup: list pod sandboxes: %v\n", err)
		return 1
	}
	for _, sb := range sandboxes {
		name := sb.Id[:12]
		if sb.Metadata != nil {
			name = sb.Metadata.Namespace + "/" + sb.Metadata.Name
		}
		if err := rs.StopPodSandbox(ctx, sb.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri-cleanup: stop pod %s: %v\n", name, err)
			rc = 1
		}
		if err := rs.RemovePodSandbox(ctx, sb.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri-cleanup: remove pod %s: %v\n", name, err)
			rc = 1
			continue
		}
		fmt.Printf("removed pod %s\n", name)
	}
	// Containers outside any sandbox (should be none after the above).
	containers, err := rs.ListContainers(ctx, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-cleanup: list containers: %v\n", err)
		return 1
	}
	for _, c := range containers {
		_ = rs.StopContainer(ctx, c.Id, 5)
		if err := rs.RemoveContainer(ctx, c.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri-cleanup: remove container %s: %v\n", c.Id[:12], err)
			rc = 1
		}
	}
	return rc
}
