"""Glance disk images: fetched once into a shared read-only cache, then a
qcow2 overlay per instance.

Layout of the cache directory::

    <image_cache_path>/<image id>          the image as Glance served it
                                           (raw or qcow2), mode 0444
    <image_cache_path>/<image id>.json     {"format", "virtual_size", "size"}
    <image_cache_path>/locks/              one lock file per image id

Every check that can reject an image runs before the image enters the
cache, so a bad image is never shared: the size Glance recorded, nova's own
format inspector (the claimed disk_format must match the content, no
backing files or external data files), ``qemu-img check`` for qcow2.
"""

import dataclasses
import errno
import json
import os
import time

from oslo_concurrency import lockutils
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import fileutils
from oslo_utils.imageutils import format_inspector
from oslo_utils import units

from nova import exception
from nova.virt import images as nova_images

from nova_clear.i18n import _

LOG = logging.getLogger(__name__)
SUPPORTED_FORMATS = ('raw', 'qcow2')


@dataclasses.dataclass(frozen=True)
class CachedImage:
    image_id: str
    path: str
    format: str
    virtual_size: int


def _unacceptable(image_id, reason):
    return exception.ImageUnacceptable(image_id=image_id, reason=reason)


def _meta(image_meta, field, default=None):
    return getattr(image_meta, field) if image_meta.obj_attr_is_set(field) \
        else default


def sweep(keys, unused, lock, remove, in_use, what):
    """The cache pass of both caches: each of ``keys`` that ``unused(key,
    in_use())`` finds unused is checked again under ``lock(key)`` with
    ``in_use()`` read afresh (spawns record their references under that
    lock), then removed; returns the removed keys."""
    removed = []
    snapshot = in_use()
    for key in keys:
        if not unused(key, snapshot):
            continue
        with lock(key):
            if not unused(key, in_use()):
                continue
            remove(key)
        LOG.info('Removed unused %s %s', what, key)
        removed.append(key)
    return removed


class ImageCache:
    """Thread- and process-safe cache of Glance disk images."""

    def __init__(self, path):
        self.path = path
        self.lock_path = os.path.join(path, 'locks')

    def _paths(self, image_id):
        base = os.path.join(self.path, image_id)
        return base, base + '.json', base + '.part'

    def lookup(self, image_id):
        """The cached image, or None."""
        base, info_path, _part = self._paths(image_id)
        try:
            with open(info_path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            return None
        if not os.path.exists(base):
            return None
        return CachedImage(image_id, base, info['format'],
                           info['virtual_size'])

    def _lock(self, image_id):
        return lockutils.lock('clear-image-%s' % image_id, external=True,
                              lock_path=self.lock_path)

    def get(self, context, image_meta, claim=None):
        """Return the :class:`CachedImage`, downloading it if needed.

        Concurrent spawns of one image download it once (a lock per image
        id, shared with other processes through a lock file).
        ``claim(cached)`` runs under that lock while the image is in the
        cache: the caller records its reference there (the instance's image
        ref file), which :meth:`remove_unused` reads again under the lock.
        """
        image_id = str(image_meta.id)
        cached = self.lookup(image_id)
        if cached is not None and claim is None:
            return cached
        fileutils.ensure_tree(self.lock_path)
        with self._lock(image_id):
            cached = self.lookup(image_id) or \
                self._fetch(context, image_meta)
            if claim is not None:
                claim(cached)
            return cached

    def _fetch(self, context, image_meta):
        image_id = str(image_meta.id)
        base, info_path, part = self._paths(image_id)
        disk_format = _meta(image_meta, 'disk_format')
        if disk_format not in SUPPORTED_FORMATS:
            raise _unacceptable(
                image_id, _('disk_format %(f)s is not supported by Clear '
                            'Containers (supported: %(s)s)') %
                {'f': disk_format, 's': ', '.join(SUPPORTED_FORMATS)})
        with fileutils.remove_path_on_error(part):
            LOG.info('Downloading image %s into the Clear Containers '
                     'cache', image_id)
            try:
                nova_images.fetch(context, image_id, part)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise exception.InstanceDeployFailure(
                        reason=_('no space left in the image cache %(p)s '
                                 'for image %(i)s') %
                        {'p': self.path, 'i': image_id})
                raise
            actual = os.path.getsize(part)
            expected = _meta(image_meta, 'size')
            if expected and actual != expected:
                raise _unacceptable(
                    image_id, _('downloaded %(a)d bytes but Glance records '
                                '%(e)d: the image is truncated or corrupt')
                    % {'a': actual, 'e': expected})
            if actual == 0:
                raise _unacceptable(image_id, _('the image is empty'))
            fmt = _inspect_format(image_id, disk_format, part)
            info = self._inspect(image_id, part, fmt)
            os.chmod(part, 0o444)
            with open(info_path + '.tmp', 'w') as f:
                json.dump({'format': fmt, 'virtual_size': info.virtual_size,
                           'size': actual}, f)
            os.replace(part, base)
        os.replace(info_path + '.tmp', info_path)
        return CachedImage(image_id, base, fmt, info.virtual_size)

    @staticmethod
    def _inspect(image_id, path, fmt):
        try:
            info = nova_images.qemu_img_info(path, format=fmt)
        except exception.InvalidDiskInfo as e:
            raise _unacceptable(image_id, str(e))
        if info.backing_file:
            raise _unacceptable(image_id, _('image has a backing file'))
        if fmt == 'qcow2':
            try:
                processutils.execute('qemu-img', 'check', '-f', 'qcow2',
                                     '--force-share', path)
            except processutils.ProcessExecutionError as e:
                detail = (e.stdout or e.stderr or '').strip().splitlines()
                raise _unacceptable(
                    image_id, _('qemu-img check found the qcow2 image '
                                'corrupt or truncated: %s') %
                    (detail[-1] if detail else e))
        if not info.virtual_size:
            raise _unacceptable(image_id, _('image has no size'))
        return info

    def remove(self, image_id):
        base, info_path, part = self._paths(image_id)
        for p in (info_path, base, part):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def _unused(self, image_id, in_use, min_age):
        if image_id in in_use:
            return False
        info = os.path.join(self.path, image_id + '.json')
        try:
            return time.time() - os.stat(info).st_mtime >= min_age
        except FileNotFoundError:
            return False

    def remove_unused(self, in_use, min_age):
        """Remove cached images no instance uses, untouched for min_age
        seconds; returns the removed ids.

        ``in_use()`` returns the ids instances use; each candidate is
        checked again under its lock with ``in_use()`` read afresh, since
        get() records new references under that lock.
        """
        return sweep(self.cached_ids(), lambda i, used: self._unused(
            i, used, min_age), self._lock, self.remove, in_use,
            'cached image')

    def cached_ids(self):
        return sorted(f[:-5] for f in os.listdir(self.path)
                      if f.endswith('.json')) \
            if os.path.isdir(self.path) else []


def _inspect_format(image_id, disk_format, path):
    """nova's deep inspection, with a message that says what was found."""
    try:
        return nova_images.do_image_deep_inspection(
            {'disk_format': disk_format}, image_id, path)
    except exception.ImageUnacceptable as e:
        try:
            found = format_inspector.detect_file_format(path)
        except format_inspector.ImageFormatError:
            found = None
        raise _unacceptable(
            image_id, _('Glance says disk_format %(claimed)s but the '
                        'content is %(found)s (%(detail)s)') %
            {'claimed': disk_format,
             'found': str(found) if found else 'not a known disk format',
             'detail': e.kwargs.get('reason', e)})


def create_overlay(cached, dest, root_gb):
    """A qcow2 overlay on the cached image, sized to the flavor's disk.

    ``root_gb`` 0 keeps the image's own size (Nova's meaning of a
    zero-disk flavor).
    """
    size = root_gb * units.Gi if root_gb else cached.virtual_size
    if cached.virtual_size > size:
        raise exception.FlavorDiskSmallerThanImage(
            flavor_size=size, image_size=cached.virtual_size)
    try:
        processutils.execute(
            'qemu-img', 'create', '-f', 'qcow2',
            '-o', 'backing_file=%s,backing_fmt=%s' % (
                cached.path, cached.format),
            dest, str(size))
    except processutils.ProcessExecutionError as e:
        raise exception.InstanceDeployFailure(
            reason=_('cannot create the instance disk %(d)s: %(e)s') %
            {'d': dest, 'e': (e.stderr or str(e)).strip()})
