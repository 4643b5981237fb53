// Package greet builds the greetings hello serves.
package greet

import "strings"

// Greeting returns "Hello, <name>!" with surrounding space trimmed; an empty name greets the world.
func Greeting(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "world"
	}
	return "Hello, " + name + "!"
}
