"""Errors of the host OS tooling; each message says what was refused."""


class HostOSError(Exception):
    """Base: a clear, user-facing refusal or failure."""


class ManifestError(HostOSError):
    """A manifest is malformed or unsafe (e.g. path traversal)."""


class SignatureError(HostOSError):
    """A top manifest's signature does not verify with the key."""


class VerificationError(HostOSError):
    """Content does not match the hash or size the manifest promises."""


class DowngradeError(HostOSError):
    """The requested version is not newer than the installed one."""


class FetchError(HostOSError):
    """A download failed or stayed truncated after resuming."""


class StagingError(HostOSError):
    """Building a snapshot failed (e.g. disk full); nothing was applied."""


class BootStateError(HostOSError):
    """The boot state file is malformed or the request does not apply."""


class ExpiredError(HostOSError):
    """A signed top manifest is past its expiry (stale or frozen mirror)."""
