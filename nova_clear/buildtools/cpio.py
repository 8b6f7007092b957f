"""Write initramfs archives in the kernel's ``newc`` cpio format.

Pure Python so that device nodes and root ownership can be recorded without
privileges, and the archive is byte-for-byte reproducible (fixed mtimes,
sorted entries).
"""

import dataclasses
import stat

_TRAILER = 'TRAILER!!!'


@dataclasses.dataclass(frozen=True)
class Entry:
    """One archive member."""

    name: str
    mode: int
    data: bytes = b''
    rdev_major: int = 0
    rdev_minor: int = 0
    uid: int = 0
    gid: int = 0


def directory(name, perm=0o755):
    return Entry(name, stat.S_IFDIR | perm)


def regular(name, data, perm=0o644):
    return Entry(name, stat.S_IFREG | perm, data)


def symlink(name, target):
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def chardev(name, major, minor, perm=0o600):
    return Entry(name, stat.S_IFCHR | perm, rdev_major=major,
                 rdev_minor=minor)


def _pad4(length):
    return b'\0' * ((4 - length % 4) % 4)


def _header(ino, entry, namesize, filesize):
    fields = (ino, entry.mode, entry.uid, entry.gid, 1, 0, filesize,
              0, 0, entry.rdev_major, entry.rdev_minor, namesize, 0)
    return b'070701' + b''.join(b'%08X' % f for f in fields)


def pack(entries):
    """Return the newc archive (uncompressed) of ``entries``.

    Parent directories must be listed before their children; entries are
    written in the order given.
    """
    out = bytearray()
    seen = set()
    for ino, entry in enumerate(list(entries) + [Entry(_TRAILER, 0)], 1):
        name = entry.name.lstrip('/')
        if name in seen:
            raise ValueError('duplicate cpio member %s' % name)
        seen.add(name)
        encoded = name.encode() + b'\0'
        head = _header(ino if name != _TRAILER else 0, entry, len(encoded),
                       len(entry.data))
        out += head + encoded
        out += _pad4(len(head) + len(encoded))
        out += entry.data + _pad4(len(entry.data))
    return bytes(out)
