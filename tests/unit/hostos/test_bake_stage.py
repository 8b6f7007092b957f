"""Publisher (bake, packs) and snapshots (stage, verify) on directories."""

import errno
import os

import fixtures
import testtools

from nova_clear.hostos import bake
from nova_clear.hostos import delta
from nova_clear.hostos import errors
from nova_clear.hostos import pack
from nova_clear.hostos import signing
from nova_clear.hostos import stage
from nova_clear.hostos import store


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


class StoreSource:
    """Content from the publisher's store, as a host would get it."""

    def __init__(self, content_dir):
        self.content_dir = content_dir
        self.written = []

    def write(self, entry, path):
        self.written.append(entry.path)
        with open(os.path.join(self.content_dir,
                               store.object_relpath(entry.content)),
                  'rb') as f:
            store.decompress_verified(f, path, entry.content, entry.size)


class BakeStageTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.content = os.path.join(self.dir, 'content')
        keyfile = os.path.join(self.dir, 'key')
        signing.generate_key(keyfile, keyfile + '.pub')
        self.key = signing.load_private_key(keyfile)
        self.root = os.path.join(self.dir, 'root')

    def _tree(self, name, version):
        top = os.path.join(self.dir, name)
        lib = bytes(range(256)) * 400
        write(os.path.join(top, 'bin', 'tool'), b'tool v1' * 1000, 0o755)
        write(os.path.join(top, 'lib', 'mod-6.1.%d' % version, 'x.ko'),
              lib + b'build %d' % version)
        write(os.path.join(top, 'etc', 'version'), b'%d\n' % version)
        os.symlink('tool', os.path.join(top, 'bin', 'alias'))
        os.chmod(os.path.join(top, 'etc'), 0o750)
        return top

    def test_bake_manifest_and_store(self):
        m = bake.bake(1, self._tree('r1', 1), self.content, self.key)
        paths = m.by_path()
        self.assertEqual(0o750, paths['etc'].mode)
        self.assertEqual('tool', paths['bin/alias'].target)
        for e in m.files():
            self.assertTrue(os.path.exists(os.path.join(
                self.content, store.object_relpath(e.content))))
        self.assertEqual(1, bake.latest_version(self.content))
        e = self.assertRaises(errors.DowngradeError, bake.bake, 1,
                              self._tree('r1b', 1), self.content, self.key)
        self.assertIn('only go up', str(e))

    def test_pack_uses_renames_and_is_signed(self):
        bake.bake(1, self._tree('r1', 1), self.content, self.key)
        bake.bake(2, self._tree('r2', 2), self.content, self.key)
        entries = bake.make_pack(self.content, 1, 2, self.key, workers=1)
        kinds = {e['kind'] for e in entries}
        self.assertIn(delta.DELTA, kinds)
        top, _m = bake.load_manifest(self.content, 2,
                                     self.key.public_key())
        path = os.path.join(self.content, store.pack_relpath(1, 2))
        self.assertEqual(store.file_sha256(path), top.pack_from(1))
        reader = pack.PackReader(path)
        self.assertEqual(len(entries), len(reader.entries))

    def test_stage_links_unchanged_and_verifies(self):
        m1 = bake.bake(1, self._tree('r1', 1), self.content, self.key)
        m2 = bake.bake(2, self._tree('r2', 2), self.content, self.key)
        stage.stage(self.root, m1, None, StoreSource(self.content))
        src = StoreSource(self.content)
        snap = stage.stage(self.root, m2, m1, src)
        self.assertEqual(['etc/version', 'lib/mod-6.1.2/x.ko'],
                         sorted(src.written))
        self.assertEqual(
            os.stat(os.path.join(snap, 'bin', 'tool')).st_ino,
            os.stat(os.path.join(stage.snapshot_dir(self.root, 1), 'bin',
                                 'tool')).st_ino)
        self.assertEqual([], stage.verify(snap, m2))
        self.assertEqual([1, 2], stage.snapshots(self.root))
        write(os.path.join(snap, 'etc', 'version'), b'evil\n', 0o644)
        os.chmod(os.path.join(snap, 'etc'), 0o777)
        write(os.path.join(snap, 'extra'), b'')
        self.assertEqual(
            {('etc', 'mode 777, expected 750'),
             ('etc/version', 'content differs'),
             ('extra', 'not in the manifest')},
            set(stage.verify(snap, m2)))

    def test_disk_full_leaves_nothing(self):
        m1 = bake.bake(1, self._tree('r1', 1), self.content, self.key)

        class Full:
            def write(self, entry, path):
                raise OSError(errno.ENOSPC, 'No space left on device')

        e = self.assertRaises(errors.StagingError, stage.stage, self.root,
                              m1, None, Full())
        self.assertIn('disk full', str(e))
        self.assertEqual([], os.listdir(stage.versions_dir(self.root)))


class RootfsCommandTest(testtools.TestCase):
    def test_mmdebstrap_command(self):
        self.assertEqual(
            ['mmdebstrap', '--variant=minbase', '--mode=root',
             '--format=directory', '--include=qemu-system-x86,busybox-static',
             'bookworm', '/srv/tree', 'http://deb.debian.org/debian'],
            bake.debian_rootfs_command(
                '/srv/tree', ['qemu-system-x86', 'busybox-static'],
                mirror='http://deb.debian.org/debian'))
        self.assertNotIn('--include=', ' '.join(
            bake.debian_rootfs_command('/t', [])))
