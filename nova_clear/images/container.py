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
build it once; a failed build leaves nothing.
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
from oslo_utils import fileutils
from oslo_utils import units

from nova import exception

from nova_clear.i18n import _
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

    def get(self, cached, size_limit):
        """The :class:`Rootfs` of the archive ``cached`` (a CachedImage)."""
        fileutils.ensure_tree(self.lock_path)
        fileutils.ensure_tree(os.path.dirname(self._by_image('x')))
        rootfs = None
        try:
            with open(self._by_image(cached.image_id)) as f:
                rootfs = self._load(f.read().strip())
        except OSError:
            pass
        if rootfs is None:
            archive = oci.open_archive(cached.path, cached.image_id)
            with lockutils.lock('clear-rootfs-%s' % archive.digest,
                                external=True, lock_path=self.lock_path):
                rootfs = self._load(archive.digest) or \
                    self._build(archive, size_limit)
            tmp = self._by_image(cached.image_id) + '.tmp'
            with open(tmp, 'w') as f:
                f.write(archive.digest)
            os.replace(tmp, self._by_image(cached.image_id))
        if size_limit is not None and rootfs.content_bytes > size_limit:
            raise exception.FlavorDiskSmallerThanImage(
                flavor_size=size_limit, image_size=rootfs.content_bytes)
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

    def remove_unused(self, in_use_paths, min_age):
        """Remove root filesystems no instance refers to, untouched for
        min_age seconds; returns the removed digests."""
        removed = []
        if not os.path.isdir(self.path):
            return removed
        now = time.time()
        for name in os.listdir(self.path):
            if not name.endswith('.ext4'):
                continue
            path = os.path.join(self.path, name)
            digest = name[:-len('.ext4')]
            if path in in_use_paths or \
                    now - os.stat(path).st_mtime < min_age:
                continue
            with lockutils.lock('clear-rootfs-%s' % digest, external=True,
                                lock_path=self.lock_path):
                for p in (path, os.path.join(self.path, digest + '.json')):
                    if os.path.exists(p):
                        os.unlink(p)
            by_image = os.path.dirname(self._by_image('x'))
            for ref in os.listdir(by_image) if os.path.isdir(by_image) \
                    else []:
                with open(os.path.join(by_image, ref)) as f:
                    if f.read().strip() == digest:
                        os.unlink(os.path.join(by_image, ref))
            LOG.info('Removed unused container root filesystem %s', digest)
            removed.append(digest)
        return removed


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
