"""The guest assets: a kernel and the agent initramfs, with their manifest.

The assets directory ( ``[clear]assets_path`` ) holds ``manifest.json``,
written by ``nova-clear-build-guest``::

    {"format": 1,
     "kernel": {"file": "vmlinuz", "sha256": "...", "size": N,
                "release": "6.1.0-56-cloud-amd64"},
     "initrd": {"file": "initrd.img", "sha256": "...", "size": N},
     "kernel_features": {"acpi": true, "virtio_mmio_cmdline": false,
                         "virtio_pci": true}}

``virtio_pci``: the kernel (or the initramfs's modules) drives virtio-pci
devices, which the q35 variant needs; manifests written before it was
recorded say nothing, and their assets have none.

``<assets>/minimal/`` holds the same files for the minimal kernel (built
by ``nova-clear-build-guest --minimal-kernel``); with ``[clear]
guest_kernel = auto`` the driver uses it when it is there and the
distribution kernel otherwise.

The driver never boots an asset whose checksum does not match.
"""

import dataclasses
import hashlib
import json
import os
import threading

from nova_clear.exception import GuestAssetsInvalid
from nova_clear.i18n import _

MANIFEST = 'manifest.json'
MINIMAL_SUBDIR = 'minimal'
FORMAT = 1
BUILD_HINT = 'nova-clear-build-guest --dest %s'


@dataclasses.dataclass(frozen=True)
class Assets:
    """Checked locations of the kernel and initramfs."""

    kernel: str
    initrd: str
    kernel_release: str
    acpi: bool
    virtio_mmio_cmdline: bool
    virtio_pci: bool = False


def sha256_file(path, bufsize=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(bufsize), b''):
            digest.update(block)
    return digest.hexdigest()


def agent_sha256():
    """sha256 of the agent (guest/init.sh) this package carries."""
    with open(os.path.join(os.path.dirname(__file__), 'init.sh'), 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def agent_is_current(path):
    """True if the assets in ``path`` were built with this package's
    agent (an upgrade of nova-clear needs nova-clear-build-guest again)."""
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            return json.load(f).get('agent_sha256') == agent_sha256()
    except (OSError, ValueError):
        return False


def write_manifest(path, kernel_file, initrd_file, kernel_release, acpi,
                   virtio_mmio_cmdline, agent=None, virtio_pci=True):
    """Record checksums of the assets in ``path`` (used by the builder)."""
    manifest = {
        'agent_sha256': agent or agent_sha256(),
        'format': FORMAT,
        'kernel': {'file': kernel_file,
                   'sha256': sha256_file(os.path.join(path, kernel_file)),
                   'size': os.path.getsize(os.path.join(path, kernel_file)),
                   'release': kernel_release},
        'initrd': {'file': initrd_file,
                   'sha256': sha256_file(os.path.join(path, initrd_file)),
                   'size': os.path.getsize(os.path.join(path, initrd_file))},
        'kernel_features': {'acpi': acpi,
                            'virtio_mmio_cmdline': virtio_mmio_cmdline,
                            'virtio_pci': virtio_pci},
    }
    tmp = os.path.join(path, MANIFEST + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write('\n')
    os.replace(tmp, os.path.join(path, MANIFEST))
    return manifest


class AssetStore:
    """Loads and verifies the assets; thread-safe, re-hashes only on change.

    A full checksum is computed when a file's (size, mtime, inode) differs
    from the last verified one, so spawns pay a ``stat`` and not a hash.
    """

    def __init__(self, path, kernel='distribution'):
        self.root = path
        self.kernel_choice = kernel
        self._lock = threading.Lock()
        self._verified = {}
        self.path = self._pick()

    def _pick(self):
        minimal = os.path.join(self.root, MINIMAL_SUBDIR)
        if self.kernel_choice == 'minimal' or (
                self.kernel_choice == 'auto' and
                os.path.exists(os.path.join(minimal, MANIFEST))):
            return minimal
        return self.root

    def _invalid(self, reason):
        hint = BUILD_HINT % self.root
        if self.path != self.root:
            hint += ' --minimal-kernel'
        return GuestAssetsInvalid(path=self.path, reason=reason, hint=hint)

    def _load_manifest(self):
        mpath = os.path.join(self.path, MANIFEST)
        try:
            with open(mpath) as f:
                manifest = json.load(f)
        except FileNotFoundError:
            raise self._invalid(_('%s is missing') % mpath)
        except (OSError, ValueError) as e:
            raise self._invalid(_('cannot read %(m)s: %(e)s') %
                                {'m': mpath, 'e': e})
        if not isinstance(manifest, dict) or \
                manifest.get('format') != FORMAT:
            raise self._invalid(_('%s has an unknown format') % mpath)
        return manifest

    def _check_file(self, entry, role):
        try:
            name = entry['file']
            expected = entry['sha256']
        except (KeyError, TypeError):
            raise self._invalid(_('manifest entry for the %s is incomplete')
                                % role)
        fpath = os.path.join(self.path, os.path.basename(name))
        try:
            st = os.stat(fpath)
        except FileNotFoundError:
            raise self._invalid(_('the %(role)s %(f)s is missing') %
                                {'role': role, 'f': fpath})
        key = (st.st_size, st.st_mtime_ns, st.st_ino, expected)
        if self._verified.get(fpath) != key:
            actual = sha256_file(fpath)
            if actual != expected:
                raise self._invalid(
                    _('the %(role)s %(f)s is corrupt (sha256 %(a)s, '
                      'manifest says %(e)s)') %
                    {'role': role, 'f': fpath, 'a': actual, 'e': expected})
            self._verified[fpath] = key
        return fpath

    def load(self):
        """Return verified :class:`Assets` or raise GuestAssetsInvalid."""
        with self._lock:
            self.path = self._pick()
            manifest = self._load_manifest()
            kernel = self._check_file(manifest.get('kernel'), 'kernel')
            initrd = self._check_file(manifest.get('initrd'), 'initramfs')
            features = manifest.get('kernel_features') or {}
            return Assets(
                kernel=kernel, initrd=initrd,
                kernel_release=manifest['kernel'].get('release', ''),
                acpi=bool(features.get('acpi', True)),
                virtio_mmio_cmdline=bool(
                    features.get('virtio_mmio_cmdline', False)),
                virtio_pci=bool(features.get('virtio_pci', False)))
