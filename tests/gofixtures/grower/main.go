// grower leaks memory (or open files) steadily until it is stopped: the supervisor's caps must catch it.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	stepMiB := flag.Int("step", 8, "MiB to allocate (and touch) per tick")
	files := flag.Int("files", 0, "files to open per tick instead of allocating memory")
	tick := flag.Duration("tick", 50*time.Millisecond, "time between steps")
	flag.Parse()
	var keep [][]byte
	var open []*os.File
	for i := 0; ; i++ {
		if *files > 0 {
			for j := 0; j < *files; j++ {
				f, err := os.Open(os.Args[0])
				if err != nil {
					fmt.Fprintln(os.Stderr, "grower:", err)
					os.Exit(4)
				}
				open = append(open, f)
			}
		} else {
			block := make([]byte, *stepMiB<<20)
			for k := range block {
				block[k] = byte(k)
			}
			keep = append(keep, block)
		}
		fmt.Printf("grower: step %d, %d MiB, %d files\n", i, len(keep)**stepMiB, len(open))
		time.Sleep(*tick)
	}
}
