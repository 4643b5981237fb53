//go:build !windows

package main

// runAsService: only Windows has a service control manager; elsewhere main serves directly.
func runAsService(func(stop <-chan struct{}) error) (bool, error) { return false, nil }
