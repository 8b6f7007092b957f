"""nova-clear-sample-images: the cache, the MBR, the command line."""

import configparser
import importlib
import io
import os
import shutil
import struct
import subprocess
import sys
from unittest import mock

import fixtures
import testtools

from nova_clear.buildtools import debian
from nova_clear import samples

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class TestCache(testtools.TestCase):

    def test_argument_then_environment_then_default(self):
        self.useFixture(fixtures.EnvironmentVariable(
            'NOVA_CLEAR_SAMPLE_CACHE'))
        self.assertEqual(samples.DEFAULT_CACHE, samples.cache_dir())
        self.useFixture(fixtures.EnvironmentVariable(
            'NOVA_CLEAR_SAMPLE_CACHE', '/env'))
        self.assertEqual('/env', samples.cache_dir())
        self.assertEqual('/arg', samples.cache_dir('/arg'))

    def test_unknown_kinds_are_refused_before_building(self):
        self.assertRaises(ValueError, samples.disk_image, 'vmdk', '/nowhere')
        self.assertRaises(ValueError, samples.container_image, 'lxc',
                          '/nowhere')
        self.assertFalse(os.path.exists('/nowhere'))


class TestMbr(testtools.TestCase):

    def test_one_bootable_linux_partition(self):
        record = samples.mbr(2048, 98304)
        self.assertEqual(512, len(record))
        self.assertEqual(b'\x55\xaa', record[510:])
        boot, kind, start, sectors = struct.unpack(
            '<B3xB3xII', record[0x1BE:0x1BE + 16])
        self.assertEqual((0x80, 0x83, 2048, 98304),
                         (boot, kind, start, sectors))
        self.assertEqual(bytes(16 * 3), record[0x1CE:0x1FE])


class TestDiskImages(testtools.TestCase):
    """Real builds (mkfs.ext4 -d, a few MiB of busybox) in a temporary
    cache."""

    def setUp(self):
        super().setUp()
        if not (shutil.which('mkfs.ext4') and
                os.path.exists(debian.BUSYBOX)):
            self.skipTest('needs e2fsprogs and busybox-static')
        self.cache = self.useFixture(fixtures.TempDir()).path

    def test_fs_then_part_built_once(self):
        fs = samples.disk_image('fs', self.cache)
        self.assertEqual(os.path.join(self.cache, 'image-fs'), fs)
        with open(fs, 'rb') as f:
            f.seek(0x438)
            self.assertEqual(b'\x53\xef', f.read(2))  # ext4 magic
        mtime = os.stat(fs).st_mtime_ns
        self.assertEqual(fs, samples.disk_image('fs', self.cache))
        self.assertEqual(mtime, os.stat(fs).st_mtime_ns)
        part = samples.disk_image('part', self.cache)
        with open(part, 'rb') as f:
            self.assertEqual(b'\x55\xaa', f.read(512)[510:])
            f.seek(samples.MiB + 0x438)
            self.assertEqual(b'\x53\xef', f.read(2))
        self.assertEqual([], [n for n in os.listdir(self.cache)
                              if '.tmp' in n or n.endswith('.tree')])

    def test_the_command_prints_the_path_only(self):
        # what devstack's plugin reads with $(...)
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_clear.samples', '--cache',
             self.cache, 'disk', 'fs'], cwd=ROOT, capture_output=True,
            text=True, check=True)
        self.assertEqual(os.path.join(self.cache, 'image-fs') + '\n',
                         proc.stdout)


class TestCommandLine(testtools.TestCase):

    def _main(self, argv):
        out = io.StringIO()
        with mock.patch('sys.stdout', out):
            self.assertEqual(0, samples.main(argv))
        return out.getvalue()

    @mock.patch.object(samples, 'disk_image', return_value='/c/image-fs')
    def test_disk_prints_the_path(self, disk_image):
        self.assertEqual('/c/image-fs\n', self._main(['--cache', '/c',
                                                      'disk']))
        disk_image.assert_called_once_with('fs', '/c')
        self._main(['disk', 'qcow2'])
        disk_image.assert_called_with('qcow2', None)

    @mock.patch.object(samples, 'container_image', return_value='/c/x.tar')
    def test_container(self, container_image):
        self.assertEqual('/c/x.tar\n', self._main(['container', 'oci']))
        container_image.assert_called_once_with('oci', None)

    @mock.patch.object(samples, 'guest_assets', return_value='/g')
    def test_assets(self, guest_assets):
        self.assertEqual('/g\n', self._main(['assets', '--dest', '/g']))
        guest_assets.assert_called_once_with('/g', None)

    def test_bad_kind_is_a_usage_error(self):
        with mock.patch('sys.stderr', io.StringIO()):
            err = self.assertRaises(SystemExit, samples.main,
                                    ['disk', 'vmdk'])
        self.assertEqual(2, err.code)


class TestConsoleScripts(testtools.TestCase):

    def test_every_console_script_resolves(self):
        cp = configparser.ConfigParser()
        cp.read(os.path.join(ROOT, 'setup.cfg'))
        scripts = dict(
            line.split(' = ') for line in
            cp['entry_points']['console_scripts'].strip().splitlines())
        self.assertEqual('nova_clear.samples:main',
                         scripts['nova-clear-sample-images'])
        for name, target in scripts.items():
            module, func = target.split(':')
            self.assertTrue(callable(getattr(importlib.import_module(module),
                                             func)), name)
