// spawner starts a copy of itself as a child and waits: stopping the service must stop the whole tree.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"
)

func main() {
	child := flag.Bool("child", false, "run as the spawned child")
	flag.Parse()
	if *child {
		fmt.Println("spawner: child running")
		for {
			time.Sleep(time.Hour)
		}
	}
	cmd := exec.Command(os.Args[0], "-child")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "spawner:", err)
		os.Exit(5)
	}
	fmt.Printf("spawner: child pid %d\n", cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "spawner: child ended:", err)
		os.Exit(6)
	}
}
