package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestGreetLines(t *testing.T) {
	var out bytes.Buffer
	if err := greetLines(strings.NewReader("Ada\n\nGrace\n"), &out); err != nil {
		t.Fatal(err)
	}
	want := "Hello, Ada!\nHello, world!\nHello, Grace!\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}
