"""Daemonless OCI image assembly: base manifest + one app layer -> OCI layout, docker-save tar, registry push.

Modules: ``blobs`` (content-addressed store), ``manifest`` (JSON documents and media types), ``layer`` (the app
layer tar), ``registry`` (a small distribution-API client), ``bases`` (where base images come from), ``writers``
(where images go) and ``backend`` (the :class:`wgobuild.image.ImageBackend` implementation and ``publish``).
"""

from wgobuild.errors import WgobuildError


class OciError(WgobuildError):
    """A failure while assembling, reading or publishing an OCI image; the message says what to do."""
