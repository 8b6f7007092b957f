"""publish -> HTTP -> update -> boot -> mark-good -> rollback, for real.

Real CLIs in subprocesses, a real HTTP server, real bsdiff4 deltas, real
snapshots with owners, modes, xattrs and hard links (run as root).
"""

import os

from nova_clear.hostos import bake
from nova_clear.hostos import manifest
from nova_clear.hostos import stage
from nova_clear.hostos import store
from tests.functional.hostos import base


class UpdateFlowTest(base.HostOSTestCase):
    def test_install_update_boot_mark_good_rollback(self):
        self.publish(1)
        out = self.update('update', '--to', '1').stdout
        self.assertIn('version 1 installed', out)
        self.assertEqual('1', self.update('status').stdout.strip())
        self.assert_snapshot_is(1)
        self.assertEqual(1000, os.stat(os.path.join(
            self.root, 'versions/1/etc/secret')).st_uid)
        self.assertEqual(b'host-secret', os.getxattr(
            os.path.join(self.root, 'versions/1/etc/secret'), 'user.label'))

        self.publish(2, delta_from=1)
        self.assertIn('available 2',
                      self.update('check').stdout)
        del self.server.requests[:]
        proc = self.update('update')
        self.assertIn('version 2 staged', proc.stdout)
        # Progress of the long steps on stderr.
        self.assertIn('download: 100%', proc.stderr)
        self.assertIn('apply: 100%', proc.stderr)
        fetched = [r for r, _ in self.server.requests]
        # One pack for the whole N -> M step, no full files.
        self.assertIn('packs/2/from-1.pack', fetched)
        self.assertFalse([r for r in fetched if r.startswith('files/')])
        self.assert_snapshot_is(2)
        # Unchanged files are hard links to the running snapshot.
        self.assertEqual(
            os.stat(os.path.join(self.root, 'versions/1/bin/busybox')).st_ino,
            os.stat(os.path.join(self.root, 'versions/2/bin/busybox')).st_ino)
        status = self.update('status').stdout
        self.assertIn('pending 2 (3 tries left)', status)

        self.assertEqual(2, self.boot_once())
        self.assertIn('version 2 is good', self.update('mark-good').stdout)
        self.assertEqual('2\nprevious 1', self.update('status').stdout.strip())
        self.assertEqual('clean', self.update('verify').stdout.split()[-1])

        out = self.update('rollback').stdout
        self.assertIn('next boot: version 1', out)
        self.assertEqual(1, self.boot_once())
        self.assert_snapshot_is(1)

    def test_pack_matches_published_tree(self):
        self.publish(1)
        tree2 = self.publish(2, delta_from=1)
        self.update('update', '--to', '1')
        self.update('update')
        scanned, _paths = bake.scan_tree(tree2)
        snap, _ = bake.scan_tree(os.path.join(self.root, 'versions', '2'))
        self.assertEqual([(e.path, e.hash) for e in scanned],
                         [(e.path, e.hash) for e in snap])
        pack = os.path.join(self.content, store.pack_relpath(1, 2))
        full = sum(os.path.getsize(os.path.join(d, f))
                   for d, _, fs in os.walk(os.path.join(self.content,
                                                        'files'))
                   for f in fs)
        self.assertLess(os.path.getsize(pack), full / 10)

    def test_resume_after_broken_transfer(self):
        self.publish(1)
        self.update('update', '--to', '1')
        self.publish(2, delta_from=1)
        self.server.cut_once.add('packs/2/from-1.pack')
        self.update('update')
        ranges = [rng for rel, rng in self.server.requests
                  if rel == 'packs/2/from-1.pack']
        self.assertEqual(2, len(ranges))
        self.assertIsNone(ranges[0])
        self.assertTrue(ranges[1].startswith('bytes='))
        self.assert_snapshot_is(2)

    def test_verify_repair(self):
        self.publish(1)
        self.update('update', '--to', '1')
        lib = os.path.join(self.root, 'versions/1/usr/lib/os-1.0/libos.so')
        with open(lib, 'r+b') as f:
            f.write(b'corrupt')
        os.chmod(os.path.join(self.root, 'versions/1/etc/os-version'), 0o666)
        proc = self.update('verify', check=False)
        self.assertEqual(1, proc.returncode)
        self.assertIn('usr/lib/os-1.0/libos.so: content differs', proc.stdout)
        self.assertIn('etc/os-version: mode 666', proc.stdout)
        self.assertIn('clean', self.update('verify', '--repair').stdout)
        self.assert_snapshot_is(1)

    def test_skipping_versions_without_pack_uses_full_files(self):
        self.publish(1)
        self.update('update', '--to', '1')
        self.publish(2)
        self.publish(3, delta_from=2)
        del self.server.requests[:]
        self.update('update')
        self.assertTrue([r for r, _ in self.server.requests
                         if r.startswith('files/')])
        self.assertEqual(3, self.state().pending)
        self.assert_snapshot_is(3)

    def test_old_snapshots_pruned(self):
        self.publish(1)
        self.update('update', '--to', '1')
        for version in (2, 3):
            self.publish(version, delta_from=version - 1)
            self.update('update')
            self.boot_once()
            self.update('mark-good')
        # The running version and the previous one stay.
        self.assertEqual([2, 3], stage.snapshots(self.root))
        self.assertEqual(['2.json', '3.json'], sorted(os.listdir(
            os.path.join(self.root, 'manifests'))))
        self.publish(4, delta_from=3)
        self.update('update')
        # Staging 4 drops 2: rollback now means "not 4", back to 3.
        self.assertEqual([3, 4], stage.snapshots(self.root))
        self.update('rollback')
        self.assertEqual(3, self.boot_once())


class RepairTest(base.HostOSTestCase):
    """verify --repair restores what the manifest lists, nothing else."""

    RUNTIME = {'var/lib/nova/instances/x/disk': b'guest disk',
               'var/lib/libvirt/qemu/x.xml': b'<domain/>',
               'etc/ssh/ssh_host_ed25519_key': b'host key',
               'var/log/nova-compute.log': b'log line\n'}

    def setUp(self):
        super().setUp()
        self.publish(1, extra={'etc/ssh/sshd_config': b'Port 22\n',
                               'var/log/README': b'logs\n'})
        self.update('update', '--to', '1')
        self.snap = os.path.join(self.root, 'versions', '1')

    def _read(self, rel, top=None):
        with open(os.path.join(top or self.snap, rel), 'rb') as f:
            return f.read()

    def test_runtime_files_kept(self):
        for rel, data in self.RUNTIME.items():
            base.write(os.path.join(self.snap, rel), data, 0o600)
        with open(os.path.join(self.snap, 'usr/lib/os-1.0/libos.so'),
                  'r+b') as f:
            f.write(b'corrupt')
        base.write(os.path.join(self.snap, 'etc/ssh/sshd_config'),
                   b'PermitRootLogin yes\n')
        os.unlink(os.path.join(self.snap, 'sbin/init'))
        os.unlink(os.path.join(self.snap, 'bin/sh'))
        os.symlink('/tmp/evil', os.path.join(self.snap, 'bin/sh'))
        before = self.update('verify', check=False)
        self.assertEqual(1, before.returncode)

        proc = self.update('verify', '--repair')
        for rel, data in self.RUNTIME.items():
            self.assertEqual(data, self._read(rel), rel)
        self.assertIn('usr/lib/os-1.0/libos.so: content differs',
                      before.stdout)
        self.assertIn('var/lib: not in the manifest (kept)', before.stdout)
        self.assertIn('etc/ssh/ssh_host_ed25519_key: not in the manifest '
                      '(kept)', before.stdout)
        self.assertIn('version 1: clean, 3 paths not in the manifest '
                      '(kept)', proc.stdout)
        self.assertEqual(b'Port 22\n', self._read('etc/ssh/sshd_config'))
        self.assertEqual('/bin/busybox',
                         os.readlink(os.path.join(self.snap, 'bin/sh')))
        self.assertTrue(os.path.isfile(os.path.join(self.snap, 'sbin/init')))
        with open(os.path.join(self.root, 'manifests', '1.json'), 'rb') as f:
            wanted = manifest.parse_manifest(f.read())
        self.assertEqual(
            {'var/lib', 'etc/ssh/ssh_host_ed25519_key',
             'var/log/nova-compute.log'},
            {p for p, r in stage.verify(self.snap, wanted)
             if r == stage.EXTRA})
        self.assertEqual([], [p for p in stage.verify(self.snap, wanted)
                              if p[1] != stage.EXTRA])
        self.assertEqual([], [n for n in os.listdir(os.path.join(
            self.root, 'versions')) if n != '1'])

    def test_symlinked_parent_refused(self):
        lib = os.path.join(self.snap, 'usr/lib/os-1.0')
        decoy = os.path.join(self.dir, 'decoy')
        os.makedirs(decoy)
        base.write(os.path.join(decoy, 'libos.so'), b'decoy')
        os.rename(lib, os.path.join(self.dir, 'moved'))
        os.symlink(decoy, lib)
        os.chmod(os.path.join(self.snap, 'etc/os-version'), 0o666)
        proc = self.update('verify', '--repair', check=False)
        # Nothing written through the symlink, which is left in place.
        self.assertEqual(['libos.so'], os.listdir(decoy))
        self.assertEqual(b'decoy', self._read('libos.so', decoy))
        self.assertEqual(0o644, os.stat(os.path.join(
            decoy, 'libos.so')).st_mode & 0o7777)
        self.assertEqual(0o755, os.stat(decoy).st_mode & 0o7777)
        self.assertEqual(decoy, os.readlink(lib))
        self.assertEqual(1, proc.returncode)
        self.assertIn('usr/lib/os-1.0: repair refused: a symlink where the '
                      'manifest lists a directory: not removed', proc.stdout)
        self.assertIn('usr/lib/os-1.0/libos.so: repair refused: parent '
                      'usr/lib/os-1.0 is not a real directory', proc.stdout)
        # The rest was repaired.
        self.assertNotIn('etc/os-version', proc.stdout)
        self.assertEqual(0o644, os.stat(os.path.join(
            self.snap, 'etc/os-version')).st_mode & 0o7777)
