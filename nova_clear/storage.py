"""Per-instance files: ``<instances_path>/<uuid>/``.

``disk``         qcow2 overlay on the cached disk image, or for container
                 images:
``upper``        the writable disk (ext4: workload spec + overlay upper)
``rootfs``       path of the image's shared read-only root filesystem
``disk.config``  config drive (ISO 9660, label config-2), when required
``console.log``  serial console, written by virtlogd (root, 0600)
``domain.xml``   the XML the domain was last defined with (for operators)
"""

import os
import shutil

from oslo_log import log as logging
from oslo_utils import fileutils

import nova.privsep.path

LOG = logging.getLogger(__name__)


class InstanceFiles:

    def __init__(self, instances_path, uuid):
        self.dir = os.path.join(instances_path, uuid)
        self.disk = os.path.join(self.dir, 'disk')
        self.console_log = os.path.join(self.dir, 'console.log')
        self.domain_xml = os.path.join(self.dir, 'domain.xml')
        self.upper = os.path.join(self.dir, 'upper')
        self.config_drive = os.path.join(self.dir, 'disk.config')
        self._rootfs = os.path.join(self.dir, 'rootfs')

    def has_disks(self):
        return os.path.exists(self.disk) or (
            os.path.exists(self.upper) and os.path.exists(self._rootfs))

    def write_rootfs_ref(self, path):
        with open(self._rootfs + '.tmp', 'w') as f:
            f.write(path)
        os.replace(self._rootfs + '.tmp', self._rootfs)

    def rootfs_ref(self):
        """The shared root filesystem of a container instance, or None."""
        try:
            with open(self._rootfs) as f:
                return f.read().strip() or None
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

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
        if not os.path.exists(self.console_log):
            return b''
        data, _remaining = nova.privsep.path.last_bytes(self.console_log,
                                                        max_bytes)
        return data

    def remove(self):
        """Delete everything of the instance; safe to call twice."""
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            LOG.warning('Could not remove all of %s', self.dir)
