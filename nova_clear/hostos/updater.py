"""The host's update flow (``clear-update``), one root at a time.

update: fetch the signed top manifest of M -> verify the signature ->
fetch manifest M (hash from the top) -> refuse downgrades -> fetch the
N->M pack (one file, resumable) or full files -> stage snapshot M ->
keep manifest M beside it -> M becomes the next boot with a try counter.

Root layout::

    versions/<N>/            snapshots (see ``stage``)
    manifests/<N>.json       the verified manifest of each snapshot
    boot/state               the boot state (see ``boot``)
    boot/vmlinuz, initrd.img the good version's kernel + boot initramfs
    .clear-update/           lock, downloads in progress
"""

import fcntl
import hashlib
import os
import shutil

from nova_clear.hostos import boot
from nova_clear.hostos import delta
from nova_clear.hostos import errors
from nova_clear.hostos import manifest
from nova_clear.hostos import pack
from nova_clear.hostos import repair as repair_mod
from nova_clear.hostos import signing
from nova_clear.hostos import stage
from nova_clear.hostos import store

BOOT_FILES = ('vmlinuz', 'initrd.img')


def _noop(*_args):
    pass


class RemoteSource:
    """Writes a file's content from the pack, else the full file."""

    def __init__(self, remote, workdir, pack_reader=None, base_dir=None,
                 base=None, progress=_noop):
        self.remote = remote
        self.workdir = workdir
        self.pack = pack_reader
        self.base_dir = base_dir
        self.by_content = {}
        for e in (base.files() if base else ()):
            self.by_content.setdefault(e.content, e.path)
        self.progress = progress

    def write(self, entry, path):
        local = self.by_content.get(entry.content)
        if local is not None:
            self._copy_local(local, entry, path)
            return
        item = self.pack.get(entry.content) if self.pack else None
        if item is None:
            self._full_file(entry, path)
        elif item.kind == delta.FULL:
            with self.pack.stream(item) as src:
                store.decompress_verified(src, path, entry.content,
                                          entry.size)
        else:
            self._patch(item, entry, path)

    def _copy_local(self, rel, entry, path):
        shutil.copyfile(os.path.join(self.base_dir, rel), path)
        if store.file_sha256(path) != (entry.content, entry.size):
            raise errors.VerificationError(
                'local copy of %s is corrupt: run verify --repair'
                % entry.path)

    def _patch(self, item, entry, path):
        src_rel = self.by_content.get(item.source)
        if src_rel is None:
            raise errors.VerificationError('delta source %s of %s is not '
                                           'installed' % (item.source,
                                                          entry.path))
        h = hashlib.sha256()
        size = 0
        with delta.FileView(os.path.join(self.base_dir, src_rel)) as old, \
                open(path, 'wb') as out:
            for block in delta.iter_apply(old, self.pack.payload(item),
                                          entry.size):
                h.update(block)
                size += len(block)
                out.write(block)
        if (h.hexdigest(), size) != (entry.content, entry.size):
            raise errors.VerificationError(
                'delta for %s does not produce the content in the signed '
                'manifest (tampered delta pack, or the installed %s is '
                'damaged: see verify --repair)' % (entry.path, src_rel))

    def _full_file(self, entry, path):
        tmp = os.path.join(self.workdir, entry.content + '.zst')
        # Compressed objects are named by their content's hash only: the
        # check happens after decompression.
        self.remote.download(store.object_relpath(entry.content), tmp,
                             progress=self.progress,
                             max_size=entry.size * 2 + (1 << 20))
        with open(tmp, 'rb') as src:
            store.decompress_verified(src, path, entry.content, entry.size)
        os.unlink(tmp)


class Updater:
    """Operations of ``clear-update`` on one root."""

    def __init__(self, root, remote=None, public_key=None,
                 progress=_noop):
        self.root = os.path.abspath(root)
        self.remote = remote
        self.public_key = public_key
        self.progress = progress
        self.work = os.path.join(self.root, '.clear-update')

    # -- reading ---------------------------------------------------------
    def state(self):
        return boot.read(self.root)

    def local_manifest(self, version):
        path = os.path.join(self.root, 'manifests', '%d.json' % version)
        with open(path, 'rb') as f:
            return manifest.parse_manifest(f.read())

    def status(self):
        return self.state()

    def fetch_top(self, version=None):
        """The verified top manifest of ``version`` (default: latest)."""
        if version is None:
            try:
                version = int(self.remote.get_small('latest', 64).strip())
            except ValueError:
                raise errors.FetchError('the content has no valid latest '
                                        'version')
        data = self.remote.get_small(store.top_relpath(version),
                                     max_size=manifest.MAX_TOP)
        top = manifest.parse_top(signing.open_envelope(self.public_key,
                                                       data))
        if top.version != version:
            raise errors.SignatureError(
                'top manifest for version %d is signed for version %d '
                '(replayed)' % (version, top.version))
        if top.expired():
            raise errors.ExpiredError(
                'top manifest of version %d expired at %s: the mirror '
                'serves stale metadata (frozen, or the publisher has not '
                're-signed it with clear-image refresh); refusing'
                % (version, top.expires))
        return top

    def check(self):
        """(installed version, newest available version)."""
        try:
            top = self.fetch_top()
        except errors.ExpiredError as e:
            raise errors.ExpiredError(
                'the mirror %s serves only expired top manifests: %s'
                % (self.remote.base_url, e))
        return self.state().current, top.version

    # -- updating --------------------------------------------------------
    def _lock(self):
        os.makedirs(self.work, exist_ok=True)
        f = open(os.path.join(self.work, 'lock'), 'a')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise errors.HostOSError('another clear-update runs on %s'
                                     % self.root)
        return f

    def update(self, to=None, tries=boot.DEFAULT_TRIES):
        """Stage version ``to`` (default latest); returns the new state."""
        boot.check_tries(tries)
        with self._lock():
            state = self.state()
            top = self.fetch_top(to)
            if top.version == state.pending:
                return state
            if top.version < state.pending:
                raise errors.DowngradeError(
                    'refusing version %d: older than the staged pending '
                    'version %d (clear-update rollback cancels it first)'
                    % (top.version, state.pending))
            if top.version <= state.current:
                raise errors.DowngradeError(
                    'refusing version %d: not newer than the installed %d'
                    % (top.version, state.current))
            data = self.remote.get_small(
                store.manifest_relpath(top.version),
                max_size=top.manifest_size)
            if (manifest.sha256_hex(data), len(data)) != \
                    (top.manifest_sha256, top.manifest_size):
                raise errors.VerificationError(
                    'manifest %d does not match the signed top manifest'
                    % top.version)
            new = manifest.parse_manifest(data)
            if new.version != top.version:
                raise errors.VerificationError('manifest names version %d, '
                                               'expected %d'
                                               % (new.version, top.version))
            base = self.local_manifest(state.current) \
                if state.current else None
            if base is not None and new.previous_version == base.version \
                    and new.previous_sha256 != base.sha256:
                raise errors.VerificationError(
                    'manifest %d does not chain to the installed %d'
                    % (new.version, base.version))
            self._prune(boot.keep(state))
            self._stage(top, new, base, state)
            if state.current:
                new_state = boot.set_pending(state, new.version, tries)
                new_state = boot.BootState(**dict(
                    vars(new_state), previous=0))
            else:
                new_state = boot.installed(new.version)
            if not state.current:
                self._install_boot_files(new.version)
            boot.write(self.root, new_state)
            self._prune(boot.keep(new_state))
            shutil.rmtree(os.path.join(self.work, 'downloads'),
                          ignore_errors=True)
            return new_state

    def _stage(self, top, new, base, state):
        downloads = os.path.join(self.work, 'downloads')
        os.makedirs(downloads, exist_ok=True)
        reader = None
        ref = top.pack_from(state.current) if state.current else None
        if ref is not None:
            path = os.path.join(downloads, 'from-%d-to-%d.pack'
                                % (state.current, top.version))
            try:
                self.remote.download(
                    store.pack_relpath(state.current, top.version), path,
                    size=ref[1], sha256=ref[0], progress=self.progress)
            except OSError as e:
                raise errors.StagingError('disk full or unwritable while '
                                          'downloading: %s' % e)
            reader = pack.PackReader(path)
        source = RemoteSource(
            self.remote, downloads, reader,
            stage.snapshot_dir(self.root, base.version) if base else None,
            base, self.progress)
        # Manifest first: a snapshot never exists without its manifest.
        store.write_atomic(os.path.join(self.root, 'manifests',
                                        '%d.json' % new.version),
                           new.to_bytes())
        stage.stage(self.root, new, base, source, self.progress)

    def _prune(self, keep):
        for v in stage.snapshots(self.root):
            if v not in keep:
                stage.remove_snapshot(self.root, v)
        mdir = os.path.join(self.root, 'manifests')
        for name in os.listdir(mdir) if os.path.isdir(mdir) else ():
            version = name.split('.')[0]
            if not (version.isdigit() and int(version) in keep):
                _unlink(os.path.join(mdir, name))

    def _install_boot_files(self, version):
        """Copy the version's kernel and boot initramfs for the loader."""
        src = os.path.join(stage.snapshot_dir(self.root, version), 'boot')
        for name in BOOT_FILES:
            if os.path.exists(os.path.join(src, name)):
                with open(os.path.join(src, name), 'rb') as f:
                    store.write_atomic(os.path.join(self.root, 'boot', name),
                                       f.read())

    def mark_good(self):
        with self._lock():
            state = self.state()
            new_state = boot.mark_good(state)
            if new_state != state:
                self._install_boot_files(new_state.current)
                boot.write(self.root, new_state)
            self._prune(boot.keep(new_state))
            return new_state

    def rollback(self):
        with self._lock():
            new_state = boot.rollback(self.state())
            if new_state.current not in stage.snapshots(self.root):
                raise errors.BootStateError('snapshot %d is gone'
                                            % new_state.current)
            boot.write(self.root, new_state)
            self._install_boot_files(new_state.current)
            return new_state

    def verify(self, repair=False):
        """(version, problems, extras, refused) of the running snapshot.

        ``problems`` are manifest-listed paths that differ, ``extras``
        paths the manifest does not list (the running host's: reported,
        never removed).  With ``repair`` the listed paths are restored
        (see ``repair``); ``refused`` are those it would not touch.
        """
        state = self.state()
        version = state.booted or state.current
        if not version:
            raise errors.BootStateError('nothing installed in %s'
                                        % self.root)
        wanted = self.local_manifest(version)
        snap = stage.snapshot_dir(self.root, version)
        problems, extras = _split(stage.verify(snap, wanted))
        refused = []
        if repair and problems:
            with self._lock():
                downloads = os.path.join(self.work, 'downloads')
                os.makedirs(downloads, exist_ok=True)
                refused = repair_mod.repair(
                    snap, wanted, [p for p, _r in problems],
                    RemoteSource(self.remote, downloads))
                shutil.rmtree(downloads, ignore_errors=True)
            problems, extras = _split(stage.verify(snap, wanted))
        return version, problems, extras, refused


def _split(found):
    problems = [p for p in found if p[1] != stage.EXTRA]
    return problems, [p for p, r in found if r == stage.EXTRA]


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
