"""``verify --repair``: put back what the manifest lists, nothing else.

The running host writes into its snapshot (instances, libvirt state, host
keys, logs), so a path that is not in the manifest is the host's: it is
reported, never removed.  Only manifest-listed paths are repaired:

- a file or symlink is rebuilt beside itself (``.clear-repair.<pid>``),
  its owner, xattrs and mode set, fsynced and renamed over the damaged
  one (a new inode: snapshots share unchanged inodes by hard links);
- a missing directory is created, an existing one gets its metadata back.

Every parent is opened component by component with ``O_NOFOLLOW |
O_DIRECTORY`` and all writes go through that directory descriptor: a
parent that is a symlink (or not a directory) is refused and nothing is
written through it.  What repair would have to delete to proceed (a
directory where a file is listed, a file or symlink where a directory is
listed) is refused too: it may be the host's, an operator moves it away.
"""

import os
import stat

from nova_clear.hostos import errors
from nova_clear.hostos import manifest

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """A path this repair will not touch; never leaves this module:
    :func:`repair` returns it in its list of refused paths."""


def repair(snapshot, wanted, paths, source):
    """Repair the manifest-listed ``paths`` of ``snapshot``.

    ``source.write(entry, path)`` writes and verifies a file's content.
    Returns [(path, reason)] of the paths it refused to touch.
    """
    by_path = wanted.by_path()
    refused = []
    try:
        root_fd = os.open(snapshot, _DIR_FLAGS)
    except OSError as e:
        raise errors.HostOSError('snapshot %s is not a real directory: %s'
                                 % (snapshot, e))
    try:
        for path in sorted(p for p in set(paths) if p in by_path):
            try:
                _repair_one(root_fd, by_path[path], source)
            except Refused as e:
                refused.append((path, str(e)))
            except errors.HostOSError as e:
                refused.append((path, 'not repaired: %s' % e))
    finally:
        os.close(root_fd)
    return refused


def _open_parent(root_fd, path):
    """A descriptor of ``path``'s parent, reached without symlinks."""
    fd = os.dup(root_fd)
    walked = []
    for part in path.split('/')[:-1]:
        walked.append(part)
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as e:
            os.close(fd)
            raise Refused('parent %s is not a real directory (%s): nothing '
                          'written through it'
                          % ('/'.join(walked), e.strerror))
        os.close(fd)
        fd = child
    return fd


def _repair_one(root_fd, e, source):
    dfd = _open_parent(root_fd, e.path)
    try:
        name = e.path.rsplit('/', 1)[-1]
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if e.type == manifest.DIR:
            _repair_dir(dfd, name, e, st)
        else:
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise Refused('a directory where the manifest lists a %s: '
                              'not removed (move it away and repair '
                              'again)' % e.type)
            _replace(dfd, name, e, source)
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _repair_dir(dfd, name, e, st):
    if st is None:
        os.mkdir(name, 0o700, dir_fd=dfd)
    elif not stat.S_ISDIR(st.st_mode):
        raise Refused('a %s where the manifest lists a directory: not '
                      'removed (move it away and repair again)'
                      % ('symlink' if stat.S_ISLNK(st.st_mode) else 'file'))
    fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
    try:
        _metadata(fd, e)
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(dfd, name, e, source):
    tmp = '.clear-repair.%d' % os.getpid()
    _unlink_at(dfd, tmp)
    try:
        if e.type == manifest.FILE:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                             os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=dfd))
            # The content source takes a path: this one resolves through
            # the descriptor, not through the snapshot's path again.
            source.write(e, '/proc/self/fd/%d/%s' % (dfd, tmp))
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dfd)
            try:
                _metadata(fd, e)
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            os.symlink(e.target, tmp, dir_fd=dfd)
            os.chown(tmp, e.uid, e.gid, dir_fd=dfd, follow_symlinks=False)
            for xname, value in e.xattrs:
                os.setxattr('/proc/self/fd/%d/%s' % (dfd, tmp), xname,
                            bytes.fromhex(value), follow_symlinks=False)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        _unlink_at(dfd, tmp)
        raise


def _metadata(fd, e):
    """Owner, xattrs, then mode (chown clears setuid bits)."""
    os.chown(fd, e.uid, e.gid)
    for xname, value in e.xattrs:
        os.setxattr(fd, xname, bytes.fromhex(value))
    os.chmod(fd, e.mode)


def _unlink_at(dfd, name):
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass
