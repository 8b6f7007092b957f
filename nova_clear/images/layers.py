"""Apply container image layers (tar streams) to a root directory, safely.

The OCI image-spec rules: entries are applied in order; ``.wh.NAME``
removes NAME from the lower layers; ``.wh..wh..opq`` in a directory hides
everything the lower layers put there; hard links, symlinks, modes, owners,
mtimes and extended attributes (PAX ``SCHILY.xattr.*``) are kept.

Every path is resolved inside the root at the moment it is used, the way
containerd's applier does: a walk from a file descriptor of the root, one
component at a time, each opened with ``O_NOFOLLOW | O_DIRECTORY``, and
the last component acted on with ``*at`` calls that do not follow it.  A
later member that turns a directory into a symlink therefore cannot
redirect an earlier one's opaque marker, a whiteout or the directory
metadata applied at the end: a walk that meets a symlink refuses (or, for
metadata, skips).  The member rules themselves (names, types, whiteout
names, bounds) are :func:`tarstream.check_member`'s.
"""

import errno
import os
import shutil
import stat

from nova_clear import exception as clear_exc
from nova_clear.i18n import _
from nova_clear.images import tarstream

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _NotADirectory(Exception):
    def __init__(self, prefix):
        super().__init__(prefix)
        self.prefix = prefix


class LayerApplier:
    """Applies layers one after the other to the directory ``root``."""

    def __init__(self, root, image_id, limits=None, chown=True):
        self.image_id = image_id
        self.limits = limits or tarstream.Limits()
        self.chown = chown
        self.total = 0          # bytes of regular files written
        self.entries = 1        # inodes created (the root is one)
        self._counter = [0]     # members read, across layers
        self._dir_meta = {}     # parts -> (uid, gid, mode, mtime)
        self._root_fd = os.open(root, _DIR_FLAGS)
        self._cached = None     # (parts, fd) of the last parent walked

    def close(self):
        self._drop_cache()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    # -- resolving inside the root ------------------------------------------
    def _drop_cache(self, under=None):
        if self._cached and (under is None or
                             self._cached[0][:len(under)] == under):
            os.close(self._cached[1])
            self._cached = None

    def _walk(self, parts, create):
        """A new fd of the directory ``parts`` (a tuple of components),
        never following a symlink; None if it is missing and not
        ``create``; :class:`_NotADirectory` if a component is a symlink
        or not a directory."""
        fd = os.dup(self._root_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(part, 0o700, dir_fd=fd)
                    self.entries += 1
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _NotADirectory('/'.join(parts[:i + 1]))
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parent(self, parts, create=True):
        """The (cached) fd of the parent directory of ``parts``."""
        parent = parts[:-1]
        if self._cached and self._cached[0] == parent:
            return self._cached[1]
        self._drop_cache()
        fd = self._walk(parent, create)
        if fd is not None:
            self._cached = (parent, fd)
        return fd

    @staticmethod
    def _lstat(name, dir_fd):
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _remove(self, parts, dir_fd, name):
        """Remove ``name`` (of any type) from ``dir_fd``."""
        st = self._lstat(name, dir_fd)
        if st is None:
            return
        self._drop_cache(under=parts)
        if stat.S_ISDIR(st.st_mode):
            # fd-based, never follows a symlink; depth bounded by
            # Limits.path_depth, far below the recursion limit
            shutil.rmtree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)

    # -- layers ---------------------------------------------------------------
    def apply(self, layer_name, fileobj):
        """Apply one layer read from the uncompressed tar stream
        ``fileobj``."""
        created = set()
        try:
            for tar, member in tarstream.members(
                    fileobj, layer_name, self.limits, self._counter):
                try:
                    self._apply_member(layer_name, tar, member, created)
                except _NotADirectory as e:
                    raise tarstream.Refused(
                        layer_name, tarstream._show(member.name),
                        _('its path goes through %s, which is a symlink '
                          'or not a directory') % tarstream._show(e.prefix))
                except tarstream.MALFORMED as e:
                    if isinstance(e, OSError) and e.errno in (
                            errno.ENOSPC, errno.EDQUOT):
                        raise
                    raise tarstream.Refused(
                        layer_name, tarstream._show(member.name),
                        _('cannot be unpacked: %s') % e)
        except tarstream.Refused as e:
            raise clear_exc.LayerRefused(
                image_id=self.image_id, layer=e.layer, member=e.member,
                reason=e.reason) from None

    def _apply_member(self, layer, tar, member, created):
        entry = tarstream.check_member(layer, member, self.limits)
        if entry.kind == 'skip':
            return
        if entry.kind == 'opaque':
            # at once, in tar order: what lower layers put there goes,
            # what this layer already added stays
            fd = self._walk(entry.parts, create=True)
            try:
                for child in os.listdir(fd):
                    if entry.parts + (child,) not in created:
                        self._remove(entry.parts + (child,), fd, child)
            finally:
                os.close(fd)
            return
        if entry.kind == 'whiteout':
            fd = self._parent(entry.parts, create=False)
            if fd is not None:
                self._remove(entry.parts, fd, entry.parts[-1])
            return
        parts = entry.parts
        for i in range(len(parts), 0, -1):   # it and its parents are new
            if parts[:i] in created:
                break
            created.add(parts[:i])
        if not parts:   # the root directory itself
            self._dir_meta[()] = self._meta(member)
            self._set_xattrs(self._root_fd, member)
            return
        pfd = self._parent(parts)
        name = parts[-1]
        st = self._lstat(name, pfd)
        if member.isdir():
            if st is not None and not stat.S_ISDIR(st.st_mode):
                self._remove(parts, pfd, name)
                st = None
            if st is None:
                os.mkdir(name, 0o700, dir_fd=pfd)
                self.entries += 1
            self._dir_meta[parts] = self._meta(member)
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            try:
                self._set_xattrs(fd, member)
            finally:
                os.close(fd)
            return
        if st is not None:
            self._remove(parts, pfd, name)
        self.entries += 1
        if member.isfile():
            self._write_file(layer, tar, member, pfd, name)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=pfd)
            if self.chown:
                os.chown(name, member.uid, member.gid, dir_fd=pfd,
                         follow_symlinks=False)
            os.utime(name, (member.mtime, member.mtime), dir_fd=pfd,
                     follow_symlinks=False)
        elif member.islnk():
            self._link(layer, member, pfd, name)
        elif member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
            # the name is the fifo just made in a directory reached
            # without links: nothing else can be behind it
            if self.chown:
                os.chown(name, member.uid, member.gid, dir_fd=pfd,
                         follow_symlinks=False)
            os.chmod(name, member.mode & 0o7777, dir_fd=pfd)
            os.utime(name, (member.mtime, member.mtime), dir_fd=pfd,
                     follow_symlinks=False)

    def _write_file(self, layer, tar, member, pfd, name):
        self.total += member.size
        if self.total > self.limits.unpacked_bytes:
            raise tarstream.Refused(
                layer, tarstream._show(member.name),
                _('the image unpacks to more than %d bytes (the flavor\'s '
                  'disk or [clear] container_max_unpacked_gb)') %
                self.limits.unpacked_bytes)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                     os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
        with os.fdopen(fd, 'wb') as out:
            shutil.copyfileobj(tar.extractfile(member), out, 1 << 20)
            if self.chown:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            self._set_xattrs(fd, member)
            out.flush()
            os.utime(fd, (member.mtime, member.mtime))

    def _link(self, layer, member, pfd, name):
        target = tarstream._split(tarstream.normalise(member.linkname))
        try:
            tfd = self._walk(target[:-1], create=False)
        except _NotADirectory:
            tfd = None
        try:
            tst = self._lstat(target[-1], tfd) if tfd is not None else None
            if tst is None or not stat.S_ISREG(tst.st_mode):
                raise tarstream.Refused(
                    layer, tarstream._show(member.name),
                    _('hard link to %s, which is missing or not a regular '
                      'file') % tarstream._show(member.linkname))
            # linkat without AT_SYMLINK_FOLLOW: the inode checked above
            os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd,
                    follow_symlinks=False)
        finally:
            if tfd is not None:
                os.close(tfd)

    @staticmethod
    def _meta(member):
        return (member.uid, member.gid, member.mode & 0o7777, member.mtime)

    @staticmethod
    def _set_xattrs(fd, member):
        for key, value in member.pax_headers.items():
            if key.startswith('SCHILY.xattr.'):
                os.setxattr(fd, key[len('SCHILY.xattr.'):],
                            value.encode('utf-8', 'surrogateescape'))

    def finish(self):
        """Directory owners, modes and times, deepest first, each reached
        again from the root without following links (a directory that a
        later member replaced or removed is skipped)."""
        self._drop_cache()
        for parts in sorted(self._dir_meta, key=len, reverse=True):
            uid, gid, mode, mtime = self._dir_meta[parts]
            try:
                fd = self._walk(parts, create=False)
            except _NotADirectory:
                continue
            if fd is None:
                continue
            try:
                if self.chown:
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
        self._dir_meta.clear()
        self.close()
