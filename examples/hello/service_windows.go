//go:build windows

package main

import "golang.org/x/sys/windows/svc"

// runAsService runs serve under the Windows service control manager when the process was started by it, so
// `invoke install-service` registers a real service (a plain program fails there with error 1053). It reports
// false when started from a console or a container, where main serves directly.
func runAsService(serve func(stop <-chan struct{}) error) (bool, error) {
	isService, err := svc.IsWindowsService()
	if err != nil || !isService {
		return false, err
	}
	return true, svc.Run("hello", handler{serve: serve})
}

type handler struct {
	serve func(stop <-chan struct{}) error
}

// Execute answers the service control manager: running until Stop or Shutdown, then a clean stop. A serve error
// ends the service with a service-specific exit code, so the configured failure actions restart it.
func (h handler) Execute(_ []string, requests <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- h.serve(stop) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case err := <-done:
			return err != nil, exitCode(err)
		case req := <-requests:
			switch req.Cmd {
			case svc.Interrogate:
				status <- req.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending}
				close(stop)
				err := <-done
				return err != nil, exitCode(err)
			}
		}
	}
}

func exitCode(err error) uint32 {
	if err != nil {
		return 1
	}
	return 0
}
