// Command hello is a small HTTP service used to show wgobuild: it greets callers and reports its version.
//
//	hello -version         print the version stamped at build time and exit
//	hello -addr :8080      serve HTTP
//	hello < names.txt      read one name per line on stdin and print a greeting for each (no -addr given)
package main

import (
	"bufio"
	"context"
	"embed"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"example.com/hello/internal/greet"
)

// version is set by the build: -ldflags "-X main.version=1.2.3".
var version = "dev"

//go:embed static/index.html
var static embed.FS

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	addr := flag.String("addr", "", "listen address, for example :8080; without it, greet names read from stdin")
	flag.Parse()
	if *showVersion {
		fmt.Println(version)
		return
	}
	if *addr == "" {
		if err := greetLines(os.Stdin, os.Stdout); err != nil {
			log.Fatal(err)
		}
		return
	}
	serveAddr := func(stop <-chan struct{}) error { return serve(*addr, stop) }
	if asService, err := runAsService(serveAddr); asService || err != nil {
		if err != nil {
			log.Fatal(err)
		}
		return
	}
	log.Fatal(serveAddr(nil))
}

// serve answers HTTP on addr until stop is closed (a nil stop serves until the listener fails).
func serve(addr string, stop <-chan struct{}) error {
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.FS(static)))
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, greet.Greeting(r.URL.Query().Get("name")))
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, version)
	})
	server := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	failed := make(chan error, 1)
	go func() { failed <- server.ListenAndServe() }()
	log.Printf("hello %s listening on %s", version, addr)
	select {
	case err := <-failed:
		return err
	case <-stop:
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return server.Shutdown(ctx)
	}
}

// greetLines writes one greeting per input line.
func greetLines(in io.Reader, out io.Writer) error {
	scanner := bufio.NewScanner(in)
	for scanner.Scan() {
		if _, err := fmt.Fprintln(out, greet.Greeting(scanner.Text())); err != nil {
			return err
		}
	}
	return scanner.Err()
}
