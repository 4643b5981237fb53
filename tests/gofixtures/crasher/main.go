// crasher exits with a non-zero code right after it starts: the supervisor's back-off must not become a hot loop.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	code := flag.Int("code", 3, "exit code")
	after := flag.Duration("after", 0, "run this long before exiting")
	flag.Parse()
	fmt.Println("crasher: starting")
	fmt.Fprintln(os.Stderr, "crasher: about to fail")
	time.Sleep(*after)
	os.Exit(*code)
}
