"""Root-only work of nova-clear, run in an oslo.privsep daemon.

nova-compute runs unprivileged; unpacking container layers with their
owners, device-less but xattr-carrying files, and packing the result into
a filesystem image needs root.  The daemon is configured in
``[clear_sys_admin]`` (``helper_command``), like nova's ``[nova_sys_admin]``.
"""

import errno
import os
import shutil
import subprocess

from oslo_privsep import capabilities
from oslo_privsep import priv_context

from nova_clear.images import layers
from nova_clear.images import oci

clear_admin_pctxt = priv_context.PrivContext(
    'nova_clear',
    cfg_section='clear_sys_admin',
    pypath=__name__ + '.clear_admin_pctxt',
    capabilities=[capabilities.CAP_CHOWN,
                  capabilities.CAP_DAC_OVERRIDE,
                  capabilities.CAP_DAC_READ_SEARCH,
                  capabilities.CAP_FOWNER,
                  capabilities.CAP_SETFCAP,
                  capabilities.CAP_SYS_ADMIN],
)

MiB = 1024 * 1024


def rootfs_image_size(content_bytes, entries):
    """Bytes of the ext4 image that holds ``content_bytes`` in ``entries``
    files: data, 4 KiB per entry for blocks and inodes, journal, slack."""
    size = content_bytes * 1.15 + entries * 4096 + 48 * MiB
    return int((size + MiB - 1) // MiB * MiB)


def build_rootfs_unprivileged(archive_path, image_id, workdir, dest,
                              size_limit, chown=True):
    """Apply the archive's layers in ``workdir`` and pack it into ``dest``.

    Returns (content_bytes, entries).  ``workdir`` is removed in any case.
    """
    try:
        archive = oci.open_archive(archive_path, image_id)
        applier = layers.LayerApplier(workdir, image_id,
                                      size_limit=size_limit, chown=chown)
        os.mkdir(workdir, 0o755)
        for layer, tar in oci.iter_layers(archive):
            applier.apply(layer.name, tar)
        applier.finish()
        entries = sum(len(d) + len(f) for _r, d, f in os.walk(workdir)) + 1
        size = rootfs_image_size(applier.total, entries)
        with open(dest, 'wb') as f:
            f.truncate(size)
        subprocess.run(
            ['mkfs.ext4', '-q', '-F', '-L', 'clear-rootfs',
             '-N', str(entries + 1024), '-d', workdir, dest],
            check=True, capture_output=True, text=True)
        # Read-only for everyone (QEMU runs as another user), owned by the
        # cache's owner: unprivileged nova-compute renames and removes it.
        parent = os.stat(os.path.dirname(os.path.abspath(dest)))
        os.chown(dest, parent.st_uid, parent.st_gid)
        os.chmod(dest, 0o444)
        return applier.total, entries
    except subprocess.CalledProcessError as e:
        if 'No space left on device' in (e.stderr or ''):
            # the cache's file system is full, not the image bad
            raise OSError(errno.ENOSPC, 'mkfs.ext4: %s' % e.stderr.strip())
        raise oci.InvalidContainerImage(
            image_id=image_id,
            reason='packing the root filesystem failed: %s' %
            e.stderr.strip())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@clear_admin_pctxt.entrypoint
def build_rootfs(archive_path, image_id, workdir, dest, size_limit):
    """Privileged :func:`build_rootfs_unprivileged` (keeps owners)."""
    return build_rootfs_unprivileged(archive_path, image_id, workdir, dest,
                                     size_limit, chown=True)
