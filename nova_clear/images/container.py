"""Container images: one read-only root filesystem per image digest, shared
by every instance of the image, plus a writable disk per instance.

Layout under ``<image_cache_path>/rootfs/``::

    <digest>.ext4       the layers applied, packed as ext4 (read-only)
    <digest>.json       {"content_bytes", "entries", "config"}
    by-image/<id>       the digest of Glance image <id>
    locks/              a lock per digest

The archive itself is fetched and checked by the disk image cache (it is a
``raw`` Glance image holding a tar); building the root filesystem runs in
the privsep daemon (owners, xattrs).  Concurrent spawns of one new image
build it once; a failed build leaves nothing.  A spawn records its
reference to the root filesystem under the digest's lock (``get(...,
claim=)``), where :meth:`RootfsCache.remove_unused` checks the references
again before it removes anything.
"""

import dataclasses
import errno
import json
import os
import subprocess
import tempfile
import time

from oslo_concurrency import lockutils
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import fileutils
from oslo_utils import units

from nova import exception

from nova_clear.i18n import _
from nova_clear.images import disk as disk_images
from nova_clear.images import oci
from nova_clear.images import tarstream
from nova_clear.images import workload as workload_mod

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Rootfs:
    digest: str
    path: str
    content_bytes: int
    config: dict


def is_container(image_meta, cached):
    """A docker image, or a bare raw image whose content is an archive."""
    cfmt = image_meta.container_format \
        if image_meta.obj_attr_is_set('container_format') else None
    if cfmt == 'docker':
        return True
    return cached.format == 'raw' and cfmt in (None, 'bare') and \
        oci.is_container_archive(cached.path)


class RootfsCache:

    def __init__(self, path, builder, limits):
        self.path = path
        self.lock_path = os.path.join(path, 'locks')
        self._builder = builder
        self.limits = tarstream.Limits(**limits)

    def _by_image(self, image_id):
        return os.path.join(self.path, 'by-image', image_id)

    def _lock(self, digest):
        return lockutils.lock('clear-rootfs-%s' % digest, external=True,
                              lock_path=self.lock_path)

    def _indexed(self, image_id):
        try:
            with open(self._by_image(image_id)) as f:
                return f.read().strip() or None
        except OSError:
            return None

    def _index(self, image_id, digest):
        """Record ``by-image/<id>``: a temporary file of its own, renamed."""
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self._by_image(
            image_id)), prefix='.%s.' % image_id, suffix='.tmp')
        try:
            with os.fdopen(fd, 'w') as f:
                f.write(digest)
            os.replace(tmp, self._by_image(image_id))
        except Exception:
            with excutils.save_and_reraise_exception():
                fileutils.delete_if_exists(tmp)

    def _load(self, digest):
        try:
            with open(os.path.join(self.path, digest + '.json')) as f:
                info = json.load(f)
        except (OSError, ValueError):
            return None
        image = os.path.join(self.path, digest + '.ext4')
        if not os.path.exists(image):
            return None
        return Rootfs(digest, image, info['content_bytes'], info['config'])

    def get(self, cached, size_limit, claim=None):
        """The :class:`Rootfs` of the archive ``cached`` (a CachedImage).

        ``claim(rootfs)`` runs under the digest's lock while the root
        filesystem is in the cache: the caller records its reference there
        (the instance's rootfs ref file).  :meth:`remove_unused` reads the
        references again under the same lock, so it never removes a root
        filesystem a spawn got but has not referenced yet.
        """
        fileutils.ensure_tree(self.lock_path)
        fileutils.ensure_tree(os.path.dirname(self._by_image('x')))
        digest = self._indexed(cached.image_id)
        if digest is not None:
            with self._lock(digest):
                rootfs = self._load(digest)
                if rootfs is not None:
                    return self._claim(rootfs, size_limit, claim)
        # New, or removed since it was indexed: build it (once).
        archive = oci.open_archive(cached.path, cached.image_id)
        with self._lock(archive.digest):
            rootfs = self._load(archive.digest) or \
                self._build(archive, size_limit)
            self._index(cached.image_id, archive.digest)
            return self._claim(rootfs, size_limit, claim)

    @staticmethod
    def _claim(rootfs, size_limit, claim):
        if size_limit is not None and rootfs.content_bytes > size_limit:
            raise exception.FlavorDiskSmallerThanImage(
                flavor_size=size_limit, image_size=rootfs.content_bytes)
        if claim is not None:
            claim(rootfs)
        return rootfs

    def _build(self, archive, size_limit):
        dest = os.path.join(self.path, archive.digest + '.ext4')
        part = dest + '.part'
        LOG.info('Unpacking container image %s (%s, %d layers)',
                 archive.image_id, archive.kind, len(archive.layers))
        # Every layer read once here, unprivileged: digests, members,
        # bounds; nothing of the image is written before it passed.
        content = oci.verify(archive, self.limits)
        if size_limit is not None and content > size_limit:
            raise exception.FlavorDiskSmallerThanImage(
                flavor_size=size_limit, image_size=content)
        limits = self.limits.to_dict()
        if size_limit is not None:
            limits['unpacked_bytes'] = min(size_limit,
                                           limits['unpacked_bytes'])
        try:
            built = self._builder(archive.path, archive.image_id, part,
                                  limits)
            info = {'content_bytes': built['content_bytes'],
                    'entries': built['entries'],
                    'config': archive.config, 'kind': archive.kind}
            with open(dest + '.json.tmp', 'w') as f:
                json.dump(info, f)
        except Exception as e:
            for path in (part, dest + '.json.tmp'):
                if os.path.exists(path):
                    os.unlink(path)
            if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                raise exception.InstanceDeployFailure(
                    reason=_('no space left in the image cache %(p)s to '
                             'unpack container image %(i)s (%(n)d layers, '
                             '%(s)d bytes compressed)') %
                    {'p': self.path, 'i': archive.image_id,
                     'n': len(archive.layers),
                     's': os.path.getsize(archive.path)}) from e
            raise
        LOG.info('Unpacked container image %s: %d bytes in %d entries '
                 '(unpacking peak RSS %d KiB)', archive.image_id,
                 built['content_bytes'], built['entries'],
                 built.get('unpack_peak_rss_kib', 0))
        os.replace(part, dest)
        os.replace(dest + '.json.tmp',
                   os.path.join(self.path, archive.digest + '.json'))
        return Rootfs(archive.digest, dest, built['content_bytes'],
                      archive.config)

    def _unused(self, path, in_use_paths, min_age):
        if path in in_use_paths:
            return False
        try:
            return time.time() - os.stat(path).st_mtime >= min_age
        except FileNotFoundError:
            return False

    def remove_unused(self, in_use, min_age):
        """Remove root filesystems no instance refers to, untouched for
        min_age seconds; returns the removed digests.

        ``in_use()`` returns the paths instances refer to.  Each candidate
        is checked again under its digest's lock, with ``in_use()`` read
        afresh: get() records new references under that lock.
        """
        if not os.path.isdir(self.path):
            return []
        digests = sorted(n[:-len('.ext4')] for n in os.listdir(self.path)
                         if n.endswith('.ext4'))
        return disk_images.sweep(
            digests, lambda d, used: self._unused(
                os.path.join(self.path, d + '.ext4'), used, min_age),
            self._lock, self._remove, in_use, 'container root filesystem')

    def _remove(self, digest):
        """Everything of ``digest``, its index entries included; under the
        digest's lock."""
        for suffix in ('.ext4', '.json'):
            fileutils.delete_if_exists(
                os.path.join(self.path, digest + suffix))
        by_image = os.path.dirname(self._by_image('x'))
        names = os.listdir(by_image) if os.path.isdir(by_image) else []
        for ref in names:
            if ref.startswith('.'):
                continue  # an index entry being written
            if self._indexed(ref) == digest:
                fileutils.delete_if_exists(os.path.join(by_image, ref))


def digest_of(path):
    """The digest of a root filesystem path get() returned."""
    name = os.path.basename(path)
    return name[:-len('.ext4')] if name.endswith('.ext4') else None


def create_writable_disk(dest, size_gb, workload, authorized_keys=None):
    """The instance's own disk: ext4 holding the agent's workload spec in
    ``/nova-clear``; the agent puts the overlay's upper layer beside it."""
    with tempfile.TemporaryDirectory(prefix='nova-clear-spec-') as tree:
        spec = os.path.join(tree, 'nova-clear')
        os.mkdir(spec)
        files = workload_mod.spec_files(workload)
        if authorized_keys:
            files['authorized_keys'] = authorized_keys.strip().encode() + \
                b'\n'
        for name, data in files.items():
            with open(os.path.join(spec, name), 'wb') as f:
                f.write(data)
        with open(dest, 'wb') as f:
            f.truncate(max(size_gb, 1) * units.Gi)
        try:
            subprocess.run(['mkfs.ext4', '-q', '-F', '-L', 'clear-upper',
                            '-E', 'root_owner=0:0', '-d', tree, dest],
                           check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            raise exception.InstanceDeployFailure(
                reason=_('cannot create the writable disk: %s') %
                e.stderr.strip())
