"""The asset builders' one error."""


class BuildError(Exception):
    """Building a kernel or an initramfs failed; the message says what
    (the command and its output, or the missing input)."""
