"""Snapshots: ``<root>/versions/<N>``, one complete tree per version.

A new version is built in ``versions/.staging-<N>``: a file whose entry
(content and metadata) is unchanged is hard-linked from the running
snapshot, every other file is written by a *content source* that checks
its hash.  Owners, modes and xattrs are applied (``clear-update`` runs as
root on the host), every written file and every directory is fsynced,
and only then is the directory renamed to ``versions/<N>``.  A crash
leaves a staging directory that the next run deletes; a snapshot
directory exists only when complete.

Removal renames to ``versions/.trash-<N>`` first, for the same reason.
"""

import errno
import os
import shutil
import stat

from nova_clear.hostos import errors
from nova_clear.hostos import manifest
from nova_clear.hostos import store


def _noop(*_args):
    pass


def versions_dir(root):
    return os.path.join(root, 'versions')


def snapshot_dir(root, version):
    return os.path.join(versions_dir(root), str(version))


def snapshots(root):
    """Versions with a complete snapshot."""
    try:
        names = os.listdir(versions_dir(root))
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def clean_leftovers(root):
    """Remove staging and trash directories of interrupted runs."""
    for name in os.listdir(versions_dir(root)):
        if name.startswith(('.staging-', '.trash-')):
            shutil.rmtree(os.path.join(versions_dir(root), name))


def remove_snapshot(root, version):
    trash = os.path.join(versions_dir(root), '.trash-%d' % version)
    os.rename(snapshot_dir(root, version), trash)
    store.fsync_dir(versions_dir(root))
    shutil.rmtree(trash)


def _inside(base, path):
    real = os.path.realpath(path)
    return real == base or real.startswith(base + os.sep)


def apply_metadata(path, entry):
    os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
    for name, value in entry.xattrs:
        os.setxattr(path, name, bytes.fromhex(value),
                    follow_symlinks=False)
    if entry.type != manifest.SYMLINK:
        os.chmod(path, entry.mode)


def stage(root, new, base=None, source=None, progress=_noop):
    """Build snapshot ``new.version``; returns its directory.

    ``base`` is the running version's manifest (files to hard-link from),
    ``source.write(entry, path)`` writes and verifies changed content.
    Raises StagingError (staging directory removed) on any failure.
    """
    os.makedirs(versions_dir(root), exist_ok=True)
    clean_leftovers(root)
    final = snapshot_dir(root, new.version)
    if os.path.lexists(final):
        remove_snapshot(root, new.version)
    staging = os.path.join(versions_dir(root), '.staging-%d' % new.version)
    os.mkdir(staging, 0o755)
    try:
        _populate(staging, new, root, base, source, progress)
        os.rename(staging, final)
        store.fsync_dir(versions_dir(root))
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC,
                                                  errno.EDQUOT):
            raise errors.StagingError(
                'disk full while staging version %d: nothing was applied '
                '(%s)' % (new.version, e))
        if isinstance(e, OSError):
            raise errors.StagingError('staging version %d failed, nothing '
                                      'was applied: %s' % (new.version, e))
        raise
    return final


def _populate(staging, new, root, base, source, progress):
    real_staging = os.path.realpath(staging)
    linkable = {}
    if base is not None:
        base_dir = snapshot_dir(root, base.version)
        for e in base.files():
            linkable.setdefault(e.hash, os.path.join(base_dir, e.path))
    files = new.files()
    done = 0
    for e in new.entries:
        path = os.path.join(staging, e.path)
        if not _inside(real_staging, os.path.dirname(path)):
            raise errors.ManifestError('%s escapes the snapshot' % e.path)
        if e.type == manifest.DIR:
            os.mkdir(path, 0o700)
            continue
        if e.type == manifest.SYMLINK:
            os.symlink(e.target, path)
            apply_metadata(path, e)
            continue
        old = linkable.get(e.hash)
        if old is not None and _same_size(old, e.size):
            os.link(old, path)
        else:
            source.write(e, path)
            apply_metadata(path, e)
            store.fsync_file(path)
        done += 1
        progress('apply', done, len(files))
    for e in reversed(new.entries):
        if e.type == manifest.DIR:
            apply_metadata(os.path.join(staging, e.path), e)
            store.fsync_dir(os.path.join(staging, e.path))
    store.fsync_dir(staging)


def _same_size(path, size):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


EXTRA = 'not in the manifest'
_BAD_PARENT = 'parent is not a real directory'


def verify(snapshot, wanted):
    """Problems of a snapshot against its manifest, as (path, reason).

    A path that is not in the manifest is reported once with reason
    ``EXTRA`` (not descended into: instance directories, logs...).  Under
    a listed directory that is not a real one nothing is read.
    """
    problems = []
    expected = wanted.by_path()
    for dirpath, dirs, files in os.walk(snapshot):
        keep = []
        for name in sorted(dirs) + sorted(files):
            rel = os.path.relpath(os.path.join(dirpath, name), snapshot)
            if rel not in expected:
                problems.append((rel, EXTRA))
            elif name in dirs:
                keep.append(name)
        dirs[:] = keep
    bad = set()
    for e in wanted.entries:
        if os.path.dirname(e.path) in bad:
            reason = _BAD_PARENT
        else:
            reason = _check(os.path.join(snapshot, e.path), e)
        if reason:
            problems.append((e.path, reason))
            if e.type == manifest.DIR and (reason == _BAD_PARENT or
                                           reason.startswith(('not a',
                                                              'missing'))):
                bad.add(e.path)
    return problems


def _check(path, e):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 'missing'
    kind = {manifest.DIR: stat.S_ISDIR, manifest.FILE: stat.S_ISREG,
            manifest.SYMLINK: stat.S_ISLNK}[e.type]
    if not kind(st.st_mode):
        return 'not a %s' % e.type
    if (st.st_uid, st.st_gid) != (e.uid, e.gid):
        return 'owner %d:%d, expected %d:%d' % (st.st_uid, st.st_gid,
                                                e.uid, e.gid)
    if e.type != manifest.SYMLINK and stat.S_IMODE(st.st_mode) != e.mode:
        return 'mode %o, expected %o' % (stat.S_IMODE(st.st_mode), e.mode)
    if e.type == manifest.SYMLINK:
        return None if os.readlink(path) == e.target else 'wrong target'
    xattrs = tuple(sorted(
        (n, os.getxattr(path, n, follow_symlinks=False).hex())
        for n in os.listxattr(path, follow_symlinks=False)))
    if xattrs != tuple(e.xattrs):
        return 'xattrs differ'
    if e.type == manifest.FILE and \
            store.file_sha256(path) != (e.content, e.size):
        return 'content differs'
    return None
