"""Guest assets: the cpio writer, the builders' shared and pure parts, the
store."""

import hashlib
import json
import os
import stat
import tempfile
from unittest import mock

import fixtures
import testtools
import zstandard

from nova_clear.buildtools import cpio
from nova_clear.buildtools import debian
from nova_clear.buildtools.errors import BuildError
from nova_clear import exception as clear_exc
from nova_clear.guest import assets
from nova_clear.guest import build
from nova_clear.guest import kernel
from nova_clear.hostos import initramfs


def parse_newc(data):
    """Minimal reader of newc archives, for checking the writer."""
    out, pos = [], 0
    while True:
        head = data[pos:pos + 110]
        assert head[:6] == b'070701', head[:6]
        f = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += (4 - pos % 4) % 4
        body = data[pos:pos + filesize]
        pos += filesize
        pos += (4 - pos % 4) % 4
        if name == 'TRAILER!!!':
            return out
        out.append((name, mode, body, rmaj, rmin))


class TestCpio(testtools.TestCase):

    def test_round_trip(self):
        archive = cpio.pack([
            cpio.directory('bin'),
            cpio.regular('bin/busybox', b'\x7fELF' * 3, perm=0o755),
            cpio.symlink('bin/sh', 'busybox'),
            cpio.chardev('dev/console', 5, 1),
        ])
        entries = parse_newc(archive)
        self.assertEqual(['bin', 'bin/busybox', 'bin/sh', 'dev/console'],
                         [e[0] for e in entries])
        self.assertTrue(stat.S_ISDIR(entries[0][1]))
        self.assertEqual(b'\x7fELF' * 3, entries[1][2])
        self.assertEqual(0o755, entries[1][1] & 0o777)
        self.assertEqual(b'busybox', entries[2][2])
        self.assertTrue(stat.S_ISCHR(entries[3][1]))
        self.assertEqual((5, 1), entries[3][3:])
        self.assertEqual(0, len(archive) % 4)

    def test_reproducible_and_no_duplicates(self):
        items = [cpio.regular('init', b'#!/bin/sh\n')]
        self.assertEqual(cpio.pack(items), cpio.pack(items))
        self.assertRaises(ValueError, cpio.pack, items + items)


class TestBuildHelpers(testtools.TestCase):

    def test_module_depends(self):
        data = b'junk\0license=GPL\0depends=virtio,virtio_ring\0name=x\0'
        self.assertEqual(['virtio', 'virtio_ring'],
                         debian.module_depends(data))
        self.assertEqual([], debian.module_depends(b'\0depends=\0'))
        self.assertEqual([], debian.module_depends(b'nothing here'))

    def test_module_name(self):
        self.assertEqual('virtio_blk', debian.module_name('/x/virtio_blk.ko'))
        self.assertEqual('crc32_pclmul',
                         debian.module_name('crc32-pclmul.ko.xz'))

    def test_order_dependencies_first(self):
        deps = {'virtio_blk': ['virtio', 'virtio_ring'],
                'virtio': [], 'virtio_ring': ['virtio'], 'overlay': []}
        order = debian.order_modules(['virtio_blk', 'overlay', 'ext4'],
                                     dict.fromkeys(deps, 'path'), {'ext4'},
                                     deps.__getitem__)
        self.assertEqual(['virtio', 'virtio_ring', 'virtio_blk', 'overlay'],
                         order)

    def test_order_errors(self):
        self.assertRaises(BuildError, debian.order_modules, ['nope'],
                          {}, set(), lambda n: [])
        cyc = {'a': ['b'], 'b': ['a']}
        self.assertRaises(BuildError, debian.order_modules, ['a'],
                          dict.fromkeys(cyc, 'p'), set(), cyc.__getitem__)

    def test_initramfs_layout(self):
        entries = build.initramfs_entries(b'#!init', b'BB',
                                          [('virtio', b'ko1'),
                                           ('virtio_blk', b'ko2')])
        by_name = {e.name: e for e in entries}
        self.assertEqual(b'#!init', by_name['init'].data)
        self.assertEqual(0o755, by_name['init'].mode & 0o777)
        self.assertTrue(stat.S_ISCHR(by_name['dev/console'].mode))
        self.assertEqual(b'virtio.ko\nvirtio_blk.ko\n',
                         by_name['lib/modules/load-order'].data)

    def test_init_script_is_packaged(self):
        self.assertTrue(build.init_script().startswith(b'#!/bin/busybox sh'))


class TestKernelPackage(testtools.TestCase):
    """nova_clear.buildtools.debian on a fake unpacked kernel package."""

    def setUp(self):
        super().setUp()
        self.work = self.useFixture(fixtures.TempDir()).path
        self.tree = os.path.join(self.work, 'tree')
        self.moddir = os.path.join(self.tree, 'lib', 'modules', '6.1-t')
        self.boot = os.path.join(self.tree, 'boot')
        for d in (os.path.join(self.moddir, 'kernel', 'drivers'), self.boot):
            os.makedirs(d)

    def _module(self, name, depends=''):
        path = os.path.join(self.moddir, 'kernel', 'drivers', name + '.ko')
        with open(path, 'wb') as f:
            f.write(b'ELF\0name=%s\0depends=%s\0' % (name.encode(),
                                                     depends.encode()))

    def test_load_modules_in_order_each_read_once(self):
        self._module('virtio')
        self._module('virtio_ring', 'virtio')
        self._module('virtio_blk', 'virtio,virtio_ring')
        with open(os.path.join(self.moddir, 'modules.builtin'), 'w') as f:
            f.write('kernel/fs/ext4/ext4.ko\n')
        with mock.patch.object(debian, 'read_module',
                               wraps=debian.read_module) as spy:
            modules = debian.load_modules(self.moddir,
                                          ('virtio_blk', 'ext4', 'virtio'))
        self.assertEqual(['virtio', 'virtio_ring', 'virtio_blk'],
                         [n for n, _data in modules])
        self.assertIn(b'depends=virtio,virtio_ring', modules[2][1])
        self.assertEqual(3, spy.call_count)

    def test_unpack_kernel(self):
        with open(os.path.join(self.boot, 'vmlinuz-6.1-t'), 'wb') as f:
            f.write(b'kernel')
        with mock.patch.object(debian, 'run') as run:
            kern = debian.unpack_kernel('k.deb', self.work)
        run.assert_called_once_with(['dpkg-deb', '-x', 'k.deb', self.tree])
        self.assertEqual(debian.Kernel(
            '6.1-t', os.path.join(self.boot, 'vmlinuz-6.1-t'), self.boot,
            self.moddir), kern)
        with open(os.path.join(self.boot, 'vmlinuz-6.2-t'), 'wb') as f:
            f.write(b'another')
        with mock.patch.object(debian, 'run'):
            err = self.assertRaises(BuildError, debian.unpack_kernel,
                                    'k.deb', self.work)
        self.assertIn('k.deb holds no single kernel', str(err))

    def test_failed_command_is_a_build_error(self):
        err = self.assertRaises(BuildError, debian.run,
                                ['sh', '-c', 'echo nope >&2; exit 3'])
        self.assertEqual('sh -c echo nope >&2; exit 3 failed (3): nope',
                         str(err))

    def test_fetch_kernel_deb_given(self):
        with mock.patch.object(debian, 'run') as run:
            self.assertEqual('k.deb', debian.fetch_kernel_deb(
                self.work, deb='k.deb'))
        run.assert_not_called()

    def test_host_boot_initramfs_layout(self):
        data = zstandard.ZstdDecompressor().decompressobj().decompress(
            initramfs.initramfs_bytes(b'BB', [('virtio', b'ko1')]))
        by_name = {e[0]: e for e in parse_newc(data)}
        self.assertEqual(initramfs.script('boot-init.sh'),
                         by_name['init'][2])
        self.assertEqual(b'BB', by_name['bin/busybox'][2])
        self.assertEqual(b'ko1', by_name['lib/modules/virtio.ko'][2])
        self.assertEqual(b'virtio.ko\n',
                         by_name['lib/modules/load-order'][2])


class TestAssetStore(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        for name, data in (('vmlinuz', b'kernel'), ('initrd.img', b'init')):
            with open(os.path.join(self.dir, name), 'wb') as f:
                f.write(data)
        assets.write_manifest(self.dir, 'vmlinuz', 'initrd.img', '6.1-test',
                              acpi=True, virtio_mmio_cmdline=False)

    def test_load(self):
        a = assets.AssetStore(self.dir).load()
        self.assertEqual(os.path.join(self.dir, 'vmlinuz'), a.kernel)
        self.assertEqual('6.1-test', a.kernel_release)
        self.assertTrue(a.acpi)
        with open(os.path.join(self.dir, 'manifest.json')) as f:
            m = json.load(f)
        self.assertEqual(hashlib.sha256(b'kernel').hexdigest(),
                         m['kernel']['sha256'])

    def test_agent_version_recorded(self):
        self.assertTrue(assets.agent_is_current(self.dir))
        self.assertEqual(hashlib.sha256(build.init_script()).hexdigest(),
                         assets.agent_sha256())
        assets.write_manifest(self.dir, 'vmlinuz', 'initrd.img', '6.1-test',
                              acpi=True, virtio_mmio_cmdline=False,
                              agent='0' * 64)
        self.assertFalse(assets.agent_is_current(self.dir))
        self.assertFalse(assets.agent_is_current(self.dir + '-missing'))

    def _fails(self, text):
        err = self.assertRaises(clear_exc.GuestAssetsInvalid,
                                assets.AssetStore(self.dir).load)
        self.assertIn(text, str(err))
        self.assertIn('nova-clear-build-guest --dest %s' % self.dir,
                      str(err))

    def test_missing_manifest(self):
        os.unlink(os.path.join(self.dir, 'manifest.json'))
        self._fails('manifest.json is missing')

    def test_unreadable_manifest(self):
        with open(os.path.join(self.dir, 'manifest.json'), 'w') as f:
            f.write('{not json')
        self._fails('cannot read')

    def test_missing_kernel(self):
        os.unlink(os.path.join(self.dir, 'vmlinuz'))
        self._fails('the kernel')

    def test_corrupt_initrd(self):
        with open(os.path.join(self.dir, 'initrd.img'), 'wb') as f:
            f.write(b'tampered')
        self._fails('initramfs')

    def test_hash_only_when_changed(self):
        store = assets.AssetStore(self.dir)
        with mock.patch.object(assets, 'sha256_file',
                               wraps=assets.sha256_file) as spy:
            store.load()
            store.load()
            self.assertEqual(2, spy.call_count)  # kernel + initrd, once
            with open(os.path.join(self.dir, 'vmlinuz'), 'ab') as f:
                f.write(b'x')
            self.assertRaises(clear_exc.GuestAssetsInvalid, store.load)
            self.assertEqual(3, spy.call_count)


class TestBuildMain(testtools.TestCase):

    def test_error_is_reported_not_raised(self):
        with tempfile.TemporaryDirectory() as d:
            with mock.patch.object(build, 'build',
                                   side_effect=BuildError('boom')):
                self.assertEqual(1, build.main(['--dest', d]))


class TestKernelChoice(testtools.TestCase):

    def _assets(self, path):
        os.makedirs(path, exist_ok=True)
        for name in ('vmlinuz', 'initrd.img'):
            with open(os.path.join(path, name), 'wb') as f:
                f.write(path.encode())
        assets.write_manifest(path, 'vmlinuz', 'initrd.img', path,
                              acpi=True, virtio_mmio_cmdline=True)

    def test_auto_prefers_minimal_when_built(self):
        root = self.useFixture(fixtures.TempDir()).path
        self._assets(root)
        store = assets.AssetStore(root, 'auto')
        self.assertEqual(root, store.load().kernel_release)
        self._assets(os.path.join(root, 'minimal'))
        self.assertEqual(os.path.join(root, 'minimal'),
                         store.load().kernel_release)
        self.assertEqual(root, assets.AssetStore(
            root, 'distribution').load().kernel_release)

    def test_minimal_required_but_missing(self):
        root = self.useFixture(fixtures.TempDir()).path
        self._assets(root)
        err = self.assertRaises(clear_exc.GuestAssetsInvalid,
                                assets.AssetStore(root, 'minimal').load)
        self.assertIn('--minimal-kernel', str(err))


class TestKernelConfig(testtools.TestCase):

    def test_fragment_and_what_olddefconfig_dropped(self):
        wanted = kernel.fragment_options(
            'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=64\nnoise\n')
        self.assertEqual({'CONFIG_A': 'y', 'CONFIG_B': 'n',
                          'CONFIG_C': '64'}, wanted)
        self.assertEqual([], kernel.missing_options(
            wanted, 'CONFIG_A=y\nCONFIG_C=64\n'))
        self.assertEqual(['CONFIG_A', 'CONFIG_B', 'CONFIG_C'],
                         kernel.missing_options(
                             wanted, '# CONFIG_A is not set\nCONFIG_C=8\n'
                                     'CONFIG_B=y\n'))

    def test_missing_source_is_a_build_error(self):
        err = self.assertRaises(BuildError, kernel.find_source,
                                os.path.join(self.useFixture(
                                    fixtures.TempDir()).path, 'none-*.xz'))
        self.assertIn('install linux-source', str(err))

    def test_shipped_fragment_has_what_the_driver_needs(self):
        with open(kernel.FRAGMENT) as f:
            opts = kernel.fragment_options(f.read())
        for need in ('CONFIG_VIRTIO_MMIO', 'CONFIG_VIRTIO_BLK',
                     'CONFIG_OVERLAY_FS', 'CONFIG_ISO9660_FS',
                     'CONFIG_EXT4_FS', 'CONFIG_ACPI_BUTTON',
                     'CONFIG_SERIAL_8250_CONSOLE', 'CONFIG_RD_ZSTD',
                     'CONFIG_PVH'):
            self.assertEqual('y', opts.get(need), need)
        self.assertNotIn('CONFIG_MODULES', opts)
