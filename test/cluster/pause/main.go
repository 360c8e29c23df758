// Command pause is the pod sandbox's process for the real-cluster tier (scripts/cluster-binaries.sh):
// it holds the pod's namespaces open, reaps orphaned children (it is PID 1 of the pod), and exits
// on SIGINT/SIGTERM like Kubernetes' C pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
