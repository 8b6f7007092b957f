"""Reading untrusted layer tars with bounded memory, and the rules every
member must pass before anything of it is written.

Python's ``tarfile`` reads a PAX or GNU long-name header whole into memory,
keeps a ``TarInfo`` for every member it has read, and accepts any name.
:func:`members` streams a tar keeping nothing behind, refuses extended
headers over :data:`MAX_HEADER_BYTES` before reading them (Go's
``archive/tar`` uses the same 1 MiB cap) and counts entries against
:class:`Limits`; :func:`check_member` classifies a member as the OCI layer
rules see it (entry, whiteout, opaque marker) or refuses it.

Nothing here imports nova: the unpacking child (:mod:`.unpack`) and the
unprivileged verification pass (:mod:`.oci`) both use it.
"""

import dataclasses
import posixpath
import tarfile
import zlib

import zstandard

MiB = 1024 * 1024
MAX_HEADER_BYTES = 1 * MiB      # one PAX/GNU long-name/long-link header
MAX_NAME_BYTES = 4096           # PATH_MAX
MAX_HEADER_CHAIN = 8            # extended headers in front of one member
WHITEOUT = '.wh.'
OPAQUE = '.wh..wh..opq'
AUFS_META = '.wh..wh.'          # aufs' own files (.wh..wh.plnk, ...)

_LONG_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
               tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class Refused(Exception):
    """A member (or the layer as a whole, member '-') is refused.  Inside
    the images package only: :mod:`.layers` and :mod:`.oci` raise it to
    Nova as :class:`nova_clear.exception.LayerRefused`."""

    def __init__(self, layer, member, reason):
        super().__init__('layer %s, member %s: %s' % (layer, member, reason))
        self.layer = layer
        self.member = member
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one image may hold ([clear] container_* options)."""
    layer_entries: int = 100000
    image_entries: int = 150000
    path_depth: int = 256
    unpacked_bytes: int = 20 * 1024 * MiB
    layers: int = 128

    def to_dict(self):
        return dataclasses.asdict(self)


# what a truncated or corrupt (compressed) tar raises while it is read
MALFORMED = (tarfile.TarError, EOFError, OSError, zlib.error,
             zstandard.ZstdError)


class Oversized(Exception):
    """Extended headers beyond the bounds; reported as :class:`Refused`
    (or, reading an archive, as ``InvalidContainerImage``)."""


class BoundedTarInfo(tarfile.TarInfo):
    """Refuses, before ``tarfile`` reads them into memory, an extended
    header larger than :data:`MAX_HEADER_BYTES`, more than
    :data:`MAX_HEADER_CHAIN` of them in front of one member (each one
    recurses and stays in memory until the member is read), and global
    headers (kept for the whole stream) over :data:`MAX_HEADER_BYTES` in
    all."""

    def _proc_member(self, tarfile_):
        if self.type not in _LONG_TYPES:
            tarfile_.nova_clear_chain = 0
            return super()._proc_member(tarfile_)
        if self.size > MAX_HEADER_BYTES:
            raise Oversized('an extended header of %d bytes (at most %d)' %
                            (self.size, MAX_HEADER_BYTES))
        chain = getattr(tarfile_, 'nova_clear_chain', 0) + 1
        if chain > MAX_HEADER_CHAIN:
            raise Oversized('more than %d extended headers for one member'
                            % MAX_HEADER_CHAIN)
        tarfile_.nova_clear_chain = chain
        if self.type == tarfile.XGLTYPE:
            total = getattr(tarfile_, 'nova_clear_global', 0) + self.size
            if total > MAX_HEADER_BYTES:
                raise Oversized('global extended headers of more than %d '
                                'bytes' % MAX_HEADER_BYTES)
            tarfile_.nova_clear_global = total
        return super()._proc_member(tarfile_)


def members(fileobj, layer, limits, counter):
    """Yield ``(tar, member)`` for each member of the tar stream
    ``fileobj``, one at a time, keeping no list of them (``tar`` reads the
    member's data with ``extractfile``); ``counter`` is a one-element list
    of the image's entries so far, checked against ``limits``."""
    n = 0
    tar = None
    while True:
        try:
            if tar is None:
                tar = tarfile.open(fileobj=fileobj, mode='r|',
                                   tarinfo=BoundedTarInfo)
            member = tar.next()
        except Oversized as e:
            raise Refused(layer, '-', str(e)) from None
        except RecursionError:
            raise Refused(layer, '-', 'extended headers nested too deeply')
        except MALFORMED as e:
            raise Refused(layer, '-', 'malformed tar: %s' % (e or
                                                             'truncated'))
        if member is None:
            return
        tar.members.clear()     # tarfile appends every member it reads
        n += 1
        counter[0] += 1
        if n > limits.layer_entries:
            raise Refused(layer, _show(member.name),
                          'more than %d entries in one layer' %
                          limits.layer_entries)
        if counter[0] > limits.image_entries:
            raise Refused(layer, _show(member.name),
                          'more than %d entries in the image' %
                          limits.image_entries)
        yield tar, member


def _show(name):
    """A member name fit for a fault message."""
    text = repr(name)[1:-1]
    return text if len(text) <= 200 else text[:200] + '...'


def normalise(name):
    """The member's path relative to the root, or None if it escapes."""
    if name.startswith('/'):
        return None
    norm = posixpath.normpath(name)
    if norm in ('.', ''):
        return '.'
    if norm == '..' or norm.startswith('../'):
        return None
    return norm


def symlink_escapes(path, target):
    """True if a symlink at ``path`` pointing to ``target`` leaves the root.

    Absolute targets are resolved against the container's root, as the
    guest will resolve them.
    """
    if target.startswith('/'):
        joined = target.lstrip('/')
    else:
        joined = posixpath.join(posixpath.dirname(path), target)
    norm = posixpath.normpath(joined)
    return norm == '..' or norm.startswith('../')


@dataclasses.dataclass(frozen=True)
class Entry:
    """What a member asks for.  ``kind`` is 'entry', 'whiteout' (remove
    ``rel``), 'opaque' (hide what lower layers put in ``rel``) or 'skip'."""
    kind: str
    rel: str
    parts: tuple     # the components of rel ('.' is ())


def _split(rel):
    return () if rel == '.' else tuple(rel.split('/'))


def check_member(layer, member, limits):
    """Classify ``member`` or raise :class:`Refused`: the rules that hold
    whatever the tree already holds."""
    name = member.name
    shown = _show(name)

    def refuse(reason):
        raise Refused(layer, shown, reason)

    if len(name.encode('utf-8', 'surrogateescape')) > MAX_NAME_BYTES:
        refuse('a name longer than %d bytes' % MAX_NAME_BYTES)
    rel = normalise(name)
    if rel is None:
        refuse('path leaves the root')
    parts = _split(rel)
    if len(parts) > limits.path_depth:
        refuse('a path deeper than %d components' % limits.path_depth)
    base = parts[-1] if parts else '.'
    parent = parts[:-1]
    if base == OPAQUE:
        return Entry('opaque', '/'.join(parent) or '.', parent)
    if base.startswith(AUFS_META):
        return Entry('skip', rel, parts)
    if base.startswith(WHITEOUT):
        target = base[len(WHITEOUT):]
        if target in ('', '.', '..'):
            refuse('malformed whiteout name %r' % base)
        return Entry('whiteout', '/'.join(parent + (target,)),
                     parent + (target,))
    if member.ischr() or member.isblk():
        refuse('device nodes are not allowed')
    if rel == '.' and not member.isdir():
        refuse('the root must be a directory')
    if member.issym():
        if symlink_escapes(rel, member.linkname):
            refuse('symlink to %s leaves the root' % _show(member.linkname))
    elif member.islnk():
        target = normalise(member.linkname)
        if target is None or target == '.':
            refuse('hard link to %s leaves the root' %
                   _show(member.linkname))
        if len(_split(target)) > limits.path_depth:
            refuse('a hard link target deeper than %d components' %
                   limits.path_depth)
    elif not (member.isfile() or member.isdir() or member.isfifo()):
        refuse('unsupported tar member type %r' % member.type)
    return Entry('entry', rel, parts)


def scan_layer(layer, fileobj, limits, counter, total):
    """Read a whole layer tar from ``fileobj`` checking every member
    (:func:`check_member`, entry counts, the unpacked size); ``total`` is
    a one-element list of the image's bytes so far.  Writes nothing."""
    for _tar, member in members(fileobj, layer, limits, counter):
        check_member(layer, member, limits)
        if member.isfile():
            total[0] += member.size
            if total[0] > limits.unpacked_bytes:
                raise Refused(layer, _show(member.name),
                              'the image unpacks to more than %d bytes' %
                              limits.unpacked_bytes)
