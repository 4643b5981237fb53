package greet

import "testing"

func TestGreeting(t *testing.T) {
	cases := map[string]string{"": "Hello, world!", "Ada": "Hello, Ada!", "  Bob  ": "Hello, Bob!"}
	for in, want := range cases {
		if got := Greeting(in); got != want {
			t.Errorf("Greeting(%q) = %q, want %q", in, got, want)
		}
	}
}
