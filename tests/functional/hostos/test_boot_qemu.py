"""The host image boots in QEMU (TCG): update, reboot into M, rollback.

The host's root disk is an ext4 image made from the updater's root
directory (``mkfs.ext4 -d``) before each boot; after a boot the boot
state the initramfs wrote on the disk is copied back (``debugfs``), so
``clear-update`` on the directory and the boot initramfs in the guest
work on the same state, as they would on one disk.  The kernel and boot
initramfs are the ones ``clear-update`` installed in ``<root>/boot``,
where a bootloader entry points.
"""

import fcntl
import hashlib
import os
import subprocess

from nova_clear.hostos import boot
from nova_clear.hostos import initramfs
from nova_clear.hostos import store
from tests.functional.hostos import base
from tests.functional import images

BOOT_TIMEOUT = int(os.environ.get('HOSTOS_BOOT_TIMEOUT', '240'))
BROKEN_INIT = b'#!/bin/sh\necho "hostos: broken init"\nexit 1\n'


def boot_assets():
    """Kernel + boot initramfs, built once per machine (and per version of
    the boot scripts) under a lock."""
    key = hashlib.sha256(initramfs.script('boot-init.sh') +
                         initramfs.script('boot-state.sh')).hexdigest()
    dest = os.path.join(images.CACHE, 'hostos-boot-' + key[:12])
    os.makedirs(images.CACHE, exist_ok=True)
    with open(os.path.join(images.CACHE, 'hostos-boot.lock'), 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(dest, 'initrd.img')):
            initramfs.build_boot(dest, log=lambda *a: None)
    return dest


class QemuBootTest(base.HostOSTestCase):
    def setUp(self):
        super().setUp()
        self.assets = boot_assets()
        self.disk = os.path.join(self.dir, 'disk.img')
        self.boots = 0

    def publish_os(self, version, init=None, delta_from=None):
        tree = base.small_os(os.path.join(self.dir, 'tree%d' % version),
                             version, init=init, boot_dir=self.assets)
        return self.publish(version, tree, delta_from=delta_from)

    def power_on(self, reboots=False):
        """Boot the host disk until it powers off; the console text."""
        used = sum(os.lstat(os.path.join(d, f)).st_size
                   for d, _, fs in os.walk(self.root) for f in fs)
        _unlink(self.disk)
        subprocess.run(['mkfs.ext4', '-q', '-F', '-d', self.root, self.disk,
                        '%dk' % ((used * 2 + (32 << 20)) // 1024)],
                       check=True, capture_output=True)
        self.boots += 1
        console = os.path.join(self.dir, 'console-%d.log' % self.boots)
        cmd = ['qemu-system-x86_64', '-M', 'microvm,acpi=on', '-accel',
               'tcg', '-m', '256', '-nodefaults', '-no-user-config',
               '-display', 'none', '-serial', 'file:' + console,
               '-kernel', os.path.join(self.root, 'boot', 'vmlinuz'),
               '-initrd', os.path.join(self.root, 'boot', 'initrd.img'),
               '-append', 'console=ttyS0 tsc_early_khz=2000000 panic=-1 '
               'clear.root=/dev/vda quiet',
               '-drive', 'id=root,file=%s,format=raw,if=none' % self.disk,
               '-device', 'virtio-blk-device,drive=root']
        if not reboots:
            cmd.append('-no-reboot')
        proc = subprocess.Popen(cmd)
        try:
            proc.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.fail('host did not power off in %ds:\n%s'
                      % (BOOT_TIMEOUT, _read(console)))
        state = os.path.join(self.dir, 'state.from-disk')
        _unlink(state)
        subprocess.run(['debugfs', '-R', 'dump /boot/state %s' % state,
                        self.disk], check=True, capture_output=True)
        with open(state, 'rb') as f:
            store.write_atomic(boot.state_path(self.root), f.read())
        return _read(console)

    def test_update_reboot_mark_good_then_rollback(self):
        self.publish_os(1)
        self.update('update', '--to', '1')
        console = self.power_on()
        self.assertIn('clear-boot: booting version 1', console)
        self.assertIn('hostos: version 1 up', console)

        self.publish_os(2, delta_from=1)
        self.update('update')
        console = self.power_on()
        self.assertIn('clear-boot: trying version 2', console)
        self.assertIn('hostos: version 2 up', console)
        self.assertNotIn('hostos: version 1 up', console)
        self.assertEqual((2, 2), (self.state().booted, self.state().tries))
        self.update('mark-good')
        self.assertEqual('2\nprevious 1',
                         self.update('status').stdout.strip())

        self.publish_os(3, init=BROKEN_INIT, delta_from=2)
        self.update('update', '--tries', '2')
        console = self.power_on(reboots=True)
        self.assertEqual(2, console.count('hostos: broken init'), console)
        self.assertIn('version 3 failed its tries: rolling back to 2',
                      console)
        self.assertIn('hostos: version 2 up',
                      console.split('rolling back')[-1])
        status = self.update('status').stdout
        self.assertEqual('2', status.split()[0])
        self.assertIn('failed 3 (rolled back)', status)
        self.assertEqual(0, self.state().pending)
        self.assertIn('clean', self.update('verify').stdout)


def _read(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def _unlink(path):
    if os.path.exists(path):
        os.unlink(path)
