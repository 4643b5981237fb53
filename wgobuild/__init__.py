"""wgobuild: build Go services into Windows container images; harden the hosts that run them."""

__version__ = "0.1.0"
