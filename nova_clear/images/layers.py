"""Apply container image layers (tar streams) to a root directory, safely.

The OCI image-spec rules: entries are applied in order; ``.wh.NAME``
removes NAME from the lower layers; ``.wh..wh..opq`` in a directory hides
everything the lower layers put there; hard links, symlinks, modes, owners,
mtimes and extended attributes (PAX ``SCHILY.xattr.*``) are kept.

Refused, naming the member: absolute paths or ``..`` after normalisation,
paths through a symlink, symlinks whose target leaves the root, hard links
to anything but an earlier regular file inside the root, device nodes, and
more data than ``size_limit``.  The host never follows a link while
unpacking: parents are checked with ``lstat``.
"""

import os
import posixpath
import shutil
import stat
import tarfile

from nova import exception

from nova_clear.i18n import _

WHITEOUT = '.wh.'
OPAQUE = '.wh..wh..opq'


class LayerRefused(exception.ImageUnacceptable):
    msg_fmt = _('Image %(image_id)s is unacceptable: layer %(layer)s, '
                'member %(member)s: %(reason)s')


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


class LayerApplier:
    """Applies layers one after the other to ``root``."""

    def __init__(self, root, image_id, size_limit=None, chown=True):
        self.root = root
        self.image_id = image_id
        self.size_limit = size_limit
        self.chown = chown
        self.total = 0
        self._dir_meta = {}

    def _refuse(self, layer, member, reason):
        raise LayerRefused(image_id=self.image_id, layer=layer,
                           member=member, reason=reason)

    def _host_path(self, rel):
        return self.root if rel == '.' else os.path.join(self.root, rel)

    def _check_parents(self, layer, member, rel):
        """Every parent must be a real directory (never a symlink)."""
        parts = rel.split('/')[:-1]
        cur = self.root
        for part in parts:
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                os.mkdir(cur, 0o755)
                continue
            if stat.S_ISLNK(st.st_mode):
                self._refuse(layer, member,
                             _('its path goes through the symlink %s') %
                             os.path.relpath(cur, self.root))
            if not stat.S_ISDIR(st.st_mode):
                self._refuse(layer, member,
                             _('a parent is not a directory'))

    @staticmethod
    def _remove(path):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def apply(self, layer_name, tar):
        """Apply one layer: ``tar`` is an open ``tarfile.TarFile``."""
        created = set()
        opaque = []
        try:
            for member in tar:
                self._apply_member(layer_name, tar, member, created, opaque)
        except tarfile.TarError as e:
            self._refuse(layer_name, '-', _('malformed tar: %s') % e)
        except EOFError:
            self._refuse(layer_name, '-', _('truncated tar'))
        # Opaque directories hide what lower layers put there, not what
        # this layer added (whatever the order inside the tar).
        for rel in opaque:
            d = self._host_path(rel)
            if not os.path.isdir(d):
                continue
            for child in os.listdir(d):
                child_rel = child if rel == '.' else rel + '/' + child
                if child_rel not in created:
                    self._remove(os.path.join(d, child))

    def _apply_member(self, layer, tar, member, created, opaque):
        name = member.name
        rel = normalise(name)
        if rel is None:
            self._refuse(layer, name, _('path leaves the root'))
        base = posixpath.basename(rel)
        parent = posixpath.dirname(rel) or '.'
        if base == OPAQUE:
            self._check_parents(layer, name, rel)
            opaque.append(parent)
            return
        if base.startswith(WHITEOUT):
            self._check_parents(layer, name, rel)
            target = posixpath.join(parent, base[len(WHITEOUT):]) \
                if parent != '.' else base[len(WHITEOUT):]
            self._remove(self._host_path(target))
            return
        if member.ischr() or member.isblk():
            self._refuse(layer, name, _('device nodes are not allowed'))
        if rel != '.':
            self._check_parents(layer, name, rel)
        path = self._host_path(rel)
        created.add(rel)
        if member.isdir():
            if os.path.lexists(path) and not os.path.isdir(path) or \
                    os.path.islink(path):
                self._remove(path)
            if not os.path.lexists(path):
                os.mkdir(path, 0o700)
            self._dir_meta[path] = member
            self._set_xattrs(path, member)
            return
        if rel == '.':
            self._refuse(layer, name, _('the root must be a directory'))
        self._remove(path)
        if member.isfile():
            self.total += member.size
            if self.size_limit is not None and self.total > self.size_limit:
                self._refuse(layer, name,
                             _('the image holds more than the flavor\'s '
                               'disk (%d bytes)') % self.size_limit)
            src = tar.extractfile(member)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                         os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, 'wb') as out:
                shutil.copyfileobj(src, out, 1 << 20)
        elif member.issym():
            if symlink_escapes(rel, member.linkname):
                self._refuse(layer, name, _('symlink to %s leaves the root')
                             % member.linkname)
            os.symlink(member.linkname, path)
            self._set_owner(path, member, follow=False)
            return
        elif member.islnk():
            target = normalise(member.linkname)
            if target is None or target == '.':
                self._refuse(layer, name, _('hard link to %s leaves the root')
                             % member.linkname)
            self._check_parents(layer, name, target)
            tpath = self._host_path(target)
            try:
                tst = os.lstat(tpath)
            except FileNotFoundError:
                self._refuse(layer, name, _('hard link to missing %s') %
                             member.linkname)
            if not stat.S_ISREG(tst.st_mode):
                self._refuse(layer, name, _('hard link to %s, which is not '
                                            'a regular file') %
                             member.linkname)
            os.link(tpath, path)
            return
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            self._refuse(layer, name, _('unsupported tar member type %r') %
                         member.type)
        self._set_owner(path, member)
        os.chmod(path, member.mode & 0o7777)
        self._set_xattrs(path, member)
        os.utime(path, (member.mtime, member.mtime))

    def _set_owner(self, path, member, follow=True):
        if self.chown:
            os.chown(path, member.uid, member.gid, follow_symlinks=follow)

    @staticmethod
    def _set_xattrs(path, member):
        for key, value in member.pax_headers.items():
            if key.startswith('SCHILY.xattr.'):
                os.setxattr(path, key[len('SCHILY.xattr.'):],
                            value.encode('utf-8', 'surrogateescape'),
                            follow_symlinks=False)

    def finish(self):
        """Directory modes, owners and times, deepest first."""
        for path in sorted(self._dir_meta, key=len, reverse=True):
            member = self._dir_meta[path]
            if not os.path.isdir(path) or os.path.islink(path):
                continue
            self._set_owner(path, member)
            os.chmod(path, member.mode & 0o7777)
            os.utime(path, (member.mtime, member.mtime))
        if not os.path.lexists(self.root):
            os.mkdir(self.root, 0o755)
