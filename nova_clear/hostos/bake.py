"""The publisher: bake release N of the OS, make delta packs to it.

``bake`` reads a root filesystem tree (it needs no privileges: owners,
modes and xattrs are read, not set), stores every file compressed under
its hash, writes manifest N chained to the previous release and the
signed top manifest, and last of all moves ``latest`` to N.

``make_pack`` writes ``packs/<M>/from-<N>.pack`` and re-signs top M so
that it names the pack by hash.  Every signed top expires ``lifetime``
after it is signed (default 7 days); ``refresh`` re-signs a published
top with a new expiry, which the publisher runs well within it.
"""

import dataclasses
import datetime
import os
import stat
import subprocess
import tempfile

from nova_clear.hostos import delta
from nova_clear.hostos import errors
from nova_clear.hostos import manifest
from nova_clear.hostos import pack
from nova_clear.hostos import signing
from nova_clear.hostos import store


def _noop(*_args):
    pass


def scan_tree(rootfs, on_skip=_noop):
    """Entries of every dir, file and symlink under ``rootfs``.

    Device nodes, FIFOs and sockets are skipped (``on_skip`` is told):
    a running host gets them from devtmpfs.  Returns (entries, paths)
    where ``paths`` maps a content hash to one file holding it.
    """
    entries, paths = [], {}
    for top, dirs, files in os.walk(rootfs):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            full = os.path.join(top, name)
            rel = os.path.relpath(full, rootfs)
            st = os.lstat(full)
            common = dict(path=rel, mode=stat.S_IMODE(st.st_mode),
                          uid=st.st_uid, gid=st.st_gid,
                          xattrs=_xattrs(full))
            if stat.S_ISDIR(st.st_mode):
                entries.append(manifest.Entry(type=manifest.DIR, **common))
            elif stat.S_ISLNK(st.st_mode):
                entries.append(manifest.Entry(
                    type=manifest.SYMLINK, target=os.readlink(full),
                    **common))
            elif stat.S_ISREG(st.st_mode):
                sha, size = store.file_sha256(full)
                paths.setdefault(sha, full)
                entries.append(manifest.Entry(type=manifest.FILE, size=size,
                                              content=sha, **common))
            else:
                on_skip(rel)
    return entries, paths


def _xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted(
        (n, os.getxattr(path, n, follow_symlinks=False).hex())
        for n in names))


def latest_version(content_dir):
    try:
        with open(os.path.join(content_dir, 'latest')) as f:
            return int(f.read().strip())
    except FileNotFoundError:
        return 0


def load_manifest(content_dir, version, public_key):
    """(top, manifest) of a published version, verified (not its expiry:
    the publisher re-signs what it published)."""
    with open(os.path.join(content_dir, store.top_relpath(version)),
              'rb') as f:
        top = manifest.parse_top(signing.open_envelope(public_key, f.read()))
    with open(os.path.join(content_dir, store.manifest_relpath(version)),
              'rb') as f:
        data = f.read()
    if manifest.sha256_hex(data) != top.manifest_sha256:
        raise errors.VerificationError('manifest %d does not match its top '
                                       'manifest' % version)
    return top, manifest.parse_manifest(data)


def bake(version, rootfs, content_dir, private_key, progress=_noop,
         lifetime=manifest.DEFAULT_LIFETIME):
    """Publish ``rootfs`` as ``version``; returns the manifest."""
    public = private_key.public_key()
    latest = latest_version(content_dir)
    if version <= latest:
        raise errors.DowngradeError(
            'version %d is not newer than the published %d: versions only '
            'go up' % (version, latest))
    previous = load_manifest(content_dir, latest, public)[1] \
        if latest else None
    entries, paths = scan_tree(
        rootfs, lambda p: progress('skip', p, 'special file'))
    for i, (sha, path) in enumerate(sorted(paths.items()), 1):
        store.put_file(content_dir, path, sha)
        progress('store', i, len(paths))
    new = manifest.make_manifest(version, entries, previous)
    data = new.to_bytes()
    store.write_atomic(os.path.join(content_dir,
                                    store.manifest_relpath(version)), data)
    _write_top(content_dir, manifest.top_for(new), private_key, lifetime)
    store.write_atomic(os.path.join(content_dir, 'latest'),
                       b'%d\n' % version)
    return new


def _write_top(content_dir, top, private_key, lifetime):
    if lifetime <= datetime.timedelta(0):
        raise errors.HostOSError('the lifetime of a top manifest must be '
                                 'positive')
    top = dataclasses.replace(top,
                              expires=manifest.expires_after(lifetime))
    store.write_atomic(
        os.path.join(content_dir, store.top_relpath(top.version)),
        signing.seal(private_key, top.to_bytes()))
    return top


def refresh(content_dir, version, private_key,
            lifetime=manifest.DEFAULT_LIFETIME):
    """Re-sign top ``version`` (default latest) with a new expiry."""
    version = version or latest_version(content_dir)
    top, _m = load_manifest(content_dir, version, private_key.public_key())
    return _write_top(content_dir, top, private_key, lifetime)


def plan_jobs(old, new, content_dir, workdir):
    """delta.Job per content of ``new`` not in ``old``, with its source.

    The source is the old file at the same path, else at the path that
    differs only by version numbers.  Sources and targets are unpacked
    from the content store into ``workdir``.
    """
    old_files = {e.path: e for e in old.files()}
    new_files = {e.path: e for e in new.files()}
    renames = delta.match_renames(old_files, new_files)
    have = {e.content for e in old_files.values()}
    jobs, seen = [], set()
    for path, e in sorted(new_files.items()):
        if e.content in have or e.content in seen:
            continue
        seen.add(e.content)
        src = old_files.get(path) or old_files.get(renames.get(path))
        job = delta.Job(target=e.content,
                        new_path=_unpack(content_dir, e, workdir))
        if src is not None:
            job.source_path = _unpack(content_dir, src, workdir)
        jobs.append((job, src.content if src else '', e.size))
    return jobs


def _unpack(content_dir, entry, workdir):
    dest = os.path.join(workdir, entry.content)
    if not os.path.exists(dest):
        with open(os.path.join(content_dir,
                               store.object_relpath(entry.content)),
                  'rb') as f:
            store.decompress_verified(f, dest, entry.content, entry.size)
    return dest


def make_pack(content_dir, from_version, to_version, private_key,
              workers=None, ram_budget=2 << 30, timeout=600,
              window=delta.DEFAULT_WINDOW, progress=_noop,
              lifetime=manifest.DEFAULT_LIFETIME):
    """Write the N->M pack and name it in the re-signed top manifest M."""
    if from_version >= to_version:
        raise errors.DowngradeError('deltas go from an older version to a '
                                    'newer one')
    public = private_key.public_key()
    top, new = load_manifest(content_dir, to_version, public)
    _old_top, old = load_manifest(content_dir, from_version, public)
    with tempfile.TemporaryDirectory(prefix='clear-image-') as work:
        planned = plan_jobs(old, new, content_dir, work)
        biggest = max([os.path.getsize(j.source_path)
                       for j, _s, _n in planned if j.source_path] or [0])
        if workers is None:
            workers = delta.workers_for(biggest, ram_budget, window=window)
        mem_limit = max(ram_budget // workers, 256 << 20)
        delta.compute_all([j for j, _s, _n in planned], work,
                          workers=workers, timeout=timeout,
                          mem_limit=mem_limit, window=window,
                          progress=progress)
        path = os.path.join(content_dir,
                            store.pack_relpath(from_version, to_version))
        entries = pack.write_pack(path, from_version, to_version, planned)
    sha, size = store.file_sha256(path)
    _write_top(content_dir, top.with_pack(from_version, sha, size),
               private_key, lifetime)
    return entries


# What a Clear Containers compute host runs (besides nova-compute and
# nova-clear, installed from PyPI into a venv inside the tree).
COMPUTE_HOST_PACKAGES = (
    'linux-image-cloud-amd64', 'busybox-static', 'qemu-system-x86',
    'qemu-utils', 'libvirt-daemon-system', 'libvirt-clients',
    'e2fsprogs', 'python3', 'python3-venv', 'ca-certificates',
    'openssh-server', 'chrony', 'iproute2', 'nftables')


def debian_rootfs_command(dest, packages, suite='bookworm', mirror=None,
                          variant='minbase'):
    """The mmdebstrap command that builds a host root tree."""
    cmd = ['mmdebstrap', '--variant=%s' % variant, '--mode=root',
           '--format=directory']
    if packages:
        cmd.append('--include=%s' % ','.join(packages))
    cmd += [suite, dest]
    if mirror:
        cmd.append(mirror)
    return cmd


def build_debian_rootfs(dest, packages, suite='bookworm', mirror=None):
    """Build a Debian root tree with mmdebstrap (root, network)."""
    proc = subprocess.run(debian_rootfs_command(dest, packages, suite,
                                                mirror),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise errors.HostOSError('mmdebstrap failed: %s'
                                 % proc.stderr.strip()[-2000:])
