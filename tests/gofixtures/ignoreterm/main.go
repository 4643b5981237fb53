// ignoreterm ignores the polite stop (SIGTERM, Ctrl-C/Ctrl-Break): only a kill ends it.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	signal.Ignore(syscall.SIGTERM, os.Interrupt)
	fmt.Println("ignoreterm: ready")
	for {
		time.Sleep(time.Hour)
	}
}
