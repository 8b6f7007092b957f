"""Per-instance files: ``<instances_path>/<uuid>/``.

``disk``         qcow2 overlay on the cached disk image, or for container
                 images:
``upper``        the writable disk (ext4: workload spec + overlay upper)
``rootfs``       path of the image's shared read-only root filesystem
``image``        id of the cached Glance image the disks come from (keeps
                 it in the image cache while the instance exists)
``disk.eph<N>``  the N-th ephemeral disk (raw, sparse, formatted: ext4 by
                 default, label ``ephemeral<N>``), from the flavor's
                 ``ephemeral_gb`` or Nova's ephemeral block device mappings
``disk.swap``    the swap disk (raw, sparse, mkswap), from the flavor's
                 ``swap`` or Nova's swap block device mapping
                 (:mod:`nova_clear.local_disks` makes both)
``disk.config``  config drive (ISO 9660, label config-2), when required
``console.log``  serial console, written by virtlogd (root, 0600)
``domain.xml``   the XML the domain was last defined with (for operators)
"""

import os
import re
import shutil

from oslo_log import log as logging
from oslo_utils import fileutils

import nova.privsep.path

LOG = logging.getLogger(__name__)

EPHEMERAL_PREFIX = 'disk.eph'
SWAP_NAME = 'disk.swap'
_EPHEMERAL_RE = re.compile(r'^disk\.eph(0|[1-9][0-9]*)$')


def ephemeral_index(name):
    """N for a file named ``disk.eph<N>``, else None."""
    m = _EPHEMERAL_RE.match(name)
    return int(m.group(1)) if m else None


# The console log of the hosts a live migration left (live_migration.py).
CONSOLE_HISTORY = 'console.history'


class InstanceFiles:

    def __init__(self, instances_path, uuid):
        self.dir = os.path.join(instances_path, uuid)
        self.disk = os.path.join(self.dir, 'disk')
        self.console_log = os.path.join(self.dir, 'console.log')
        self.console_history = os.path.join(self.dir, CONSOLE_HISTORY)
        self.domain_xml = os.path.join(self.dir, 'domain.xml')
        self.upper = os.path.join(self.dir, 'upper')
        self.config_drive = os.path.join(self.dir, 'disk.config')
        self.swap = os.path.join(self.dir, SWAP_NAME)
        self._rootfs = os.path.join(self.dir, 'rootfs')
        self._image = os.path.join(self.dir, 'image')

    def has_disks(self):
        return os.path.exists(self.disk) or (
            os.path.exists(self.upper) and os.path.exists(self._rootfs))

    def ephemeral(self, index):
        """The path of the ``index``-th ephemeral disk."""
        return os.path.join(self.dir, '%s%d' % (EPHEMERAL_PREFIX, index))

    def ephemeral_names(self):
        """The file names of the ephemeral disks that exist, in index
        order."""
        try:
            names = os.listdir(self.dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = [(ephemeral_index(n), n) for n in names]
        return [n for i, n in sorted(f for f in found if f[0] is not None)]

    def local_disks(self):
        """The ephemeral disks then the swap disk that exist, as the
        guest sees them after its own disks: [(path, 'raw'), ...]."""
        disks = [(os.path.join(self.dir, n), 'raw')
                 for n in self.ephemeral_names()]
        if os.path.exists(self.swap):
            disks.append((self.swap, 'raw'))
        return disks

    @staticmethod
    def _write_ref(path, value):
        with open(path + '.tmp', 'w') as f:
            f.write(value)
        os.replace(path + '.tmp', path)

    @staticmethod
    def _read_ref(path):
        try:
            with open(path) as f:
                return f.read().strip() or None
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def write_rootfs_ref(self, path):
        self._write_ref(self._rootfs, path)

    def rootfs_ref(self):
        """The shared root filesystem of a container instance, or None."""
        return self._read_ref(self._rootfs)

    def write_image_ref(self, image_id):
        self._write_ref(self._image, image_id)

    def image_ref(self):
        """The id of the cached image the disks come from, or None (also
        for instances spawned before this file existed)."""
        return self._read_ref(self._image)

    def create(self):
        fileutils.ensure_tree(self.dir)

    def exists(self):
        return os.path.isdir(self.dir)

    def write_domain_xml(self, xml):
        tmp = self.domain_xml + '.tmp'
        with open(tmp, 'w') as f:
            f.write(xml)
        os.replace(tmp, self.domain_xml)

    def console_tail(self, max_bytes):
        """The last ``max_bytes`` of the console log (b'' if none yet).

        virtlogd owns the file (root, 0600), so it is read through nova's
        privsep daemon, as nova's libvirt driver does.
        """
        history = b''
        if os.path.exists(self.console_history):
            # what the guest printed on the hosts it live-migrated from
            with open(self.console_history, 'rb') as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                history = f.read()
        if not os.path.exists(self.console_log):
            return history[-max_bytes:]
        data, _remaining = nova.privsep.path.last_bytes(self.console_log,
                                                        max_bytes)
        return (history + data)[-max_bytes:]

    def remove(self):
        """Delete everything of the instance; safe to call twice."""
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            LOG.warning('Could not remove all of %s', self.dir)
