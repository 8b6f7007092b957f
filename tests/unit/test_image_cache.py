"""The image caches under concurrency: real threads, real lock files."""

import hashlib
import io
import json
import os
import shutil
import tarfile
import threading
import time

import fixtures
import testtools

from nova.compute import power_state
from nova import exception

from nova_clear.images import container
from nova_clear.images import disk as disk_images
from nova_clear.images import tarstream
from tests.unit import test_driver

IMG = test_driver.IMG


def docker_archive(path, files=(('hello', b'hi'),)):
    """A docker-archive (docker save) holding one layer of ``files``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode='w') as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    layer = layer.getvalue()
    config = json.dumps({
        'architecture': 'amd64', 'os': 'linux',
        'config': {'Cmd': ['/hello']},
        'rootfs': {'type': 'layers', 'diff_ids': [
            'sha256:' + hashlib.sha256(layer).hexdigest()]},
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + '.json'
    manifest = json.dumps([{'Config': config_name, 'RepoTags': [],
                            'Layers': ['l1/layer.tar']}]).encode()
    with tarfile.open(path, 'w') as tar:
        for name, data in ((config_name, config), ('l1/layer.tar', layer),
                           ('manifest.json', manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return disk_images.CachedImage(IMG, path, 'raw', os.path.getsize(path))


class FakeBuilder:
    """Stands in for privsep.build_rootfs: writes ``part``, slowly."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, archive_path, image_id, part, limits):
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        with open(part, 'wb') as f:
            f.write(b'ext4')
        return {'content_bytes': 4, 'entries': 1}


def run_threads(n, target):
    """Run ``target`` in n threads started together; their results and
    exceptions."""
    barrier = threading.Barrier(n)
    results, errors = [], []

    def run():
        barrier.wait()
        try:
            results.append(target())
        except Exception as e:  # noqa: B902 -- reported by the test
            errors.append(e)
    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


class TestRootfsCacheConcurrency(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.builder = FakeBuilder(delay=0.2)
        self.cache = container.RootfsCache(os.path.join(self.tmp, 'rootfs'),
                                           self.builder,
                                           tarstream.Limits().to_dict())
        self.cached = docker_archive(os.path.join(self.tmp, 'archive'))

    def test_concurrent_spawns_of_one_new_image(self):
        # Every thread waits for the one build, then indexes the image:
        # all of them at about the same moment.
        for _round in range(5):
            results, errors = run_threads(
                8, lambda: self.cache.get(self.cached, None))
            self.assertEqual([], errors)
            self.assertEqual(8, len(results))
            self.assertEqual(1, len({r.path for r in results}))
            self.assertEqual(1, self.builder.calls)
            by_image = os.path.join(self.cache.path, 'by-image')
            self.assertEqual([IMG], os.listdir(by_image))
            with open(os.path.join(by_image, IMG)) as f:
                self.assertEqual(results[0].digest, f.read())
            # next round: a new image again (the index is lost, the
            # root filesystem is rebuilt once more)
            os.unlink(os.path.join(by_image, IMG))
            for suffix in ('.ext4', '.json'):
                os.unlink(os.path.join(self.cache.path,
                                       results[0].digest + suffix))
            self.builder.calls = 0


REAL_IMAGE_CACHE_GET = disk_images.ImageCache.get


class DriverCacheTestCase(test_driver.DriverTestCase):
    """The driver with a real container cache (fake builder) and hooks that
    stop a spawn between getting an image and referencing it."""

    def setUp(self):
        super().setUp()
        self.archive = docker_archive(os.path.join(self.tmp, 'archive'))
        self.builder = FakeBuilder()
        self.drv.rootfs_cache._builder = self.builder
        self.useFixture(fixtures.MockPatch(
            'nova_clear.instance_disks.image_properties', return_value={}))
        self.in_window = threading.Event()
        self.gc_done = threading.Event()
        self.paused = False

        def upper(dest, size_gb, wl, authorized_keys=None):
            self.pause()
            with open(dest, 'wb') as f:
                f.write(b'ext4')
        self.useFixture(fixtures.MockPatch(
            'nova_clear.images.container.create_writable_disk',
            side_effect=upper))

    def pause(self):
        if self.paused:
            self.in_window.set()
            self.assertTrue(self.gc_done.wait(10))

    def gc_during_spawn(self, inst):
        """Spawn in a thread; run the cache pass while it is paused."""
        self.paused = True
        errors = []

        def spawn():
            try:
                self.spawn(inst)
            except Exception as e:  # noqa: B902 -- reported below
                errors.append(e)
                self.in_window.set()
        t = threading.Thread(target=spawn)
        t.start()
        self.assertTrue(self.in_window.wait(10))
        # Nova's instance list was read before this spawn began.
        self.drv.manage_image_cache(self.ctx, [])
        self.gc_done.set()
        t.join(10)
        self.assertEqual([], errors)

    def age(self, *paths):
        for p in paths:
            os.utime(p, (1, 1))

    def xml(self, inst):
        return self.conn.domains[inst.uuid].xml


class TestUnpackedSizeBound(testtools.TestCase):
    """Flavors with root_gb = 0 give no size: [clear]
    container_max_unpacked_gb bounds what an image may unpack to."""

    def test_bound_without_flavor_size(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        builder = FakeBuilder()
        cache = container.RootfsCache(
            os.path.join(tmp, 'rootfs'), builder,
            dict(tarstream.Limits().to_dict(), unpacked_bytes=100))
        cached = docker_archive(os.path.join(tmp, 'archive'),
                                files=(('big', b'x' * 101),))
        err = self.assertRaises(exception.ImageUnacceptable, cache.get,
                                cached, None)
        self.assertIn('member big', str(err))
        self.assertIn('unpacks to more than 100 bytes', str(err))
        self.assertEqual(0, builder.calls)
        # a flavor's disk bounds it too, as Nova's own error
        cache.limits = tarstream.Limits()
        self.assertRaises(exception.FlavorDiskSmallerThanImage, cache.get,
                          cached, 50)
        self.assertEqual(0, builder.calls)


class TestCachePassDuringSpawn(DriverCacheTestCase):

    def test_rootfs_kept_for_spawn_in_progress(self):
        disk_images.ImageCache.get.return_value = self.archive
        rootfs = self.drv.rootfs_cache.get(self.archive, None)
        self.age(rootfs.path)
        inst = self.instance()
        self.gc_during_spawn(inst)
        self.assertTrue(os.path.exists(rootfs.path))
        self.assertEqual(rootfs.path, self.drv._files(inst).rootfs_ref())
        self.assertIn(rootfs.path, self.xml(inst))
        self.assertEqual(1, self.builder.calls)

    def test_disk_image_kept_for_spawn_in_progress(self):
        self.useFixture(fixtures.MockPatchObject(
            disk_images.ImageCache, 'get', REAL_IMAGE_CACHE_GET))
        cache = self.drv.image_cache.path
        base = os.path.join(cache, IMG)
        with open(base, 'wb') as f:
            f.write(b'\0' * 512)
        with open(base + '.json', 'w') as f:
            json.dump({'format': 'raw', 'virtual_size': 512, 'size': 512}, f)
        self.age(base, base + '.json')

        def overlay(cached, dest, root_gb):
            self.pause()
            self.assertTrue(os.path.exists(cached.path))
            with open(dest, 'wb') as f:
                f.write(b'qcow2')
        self.useFixture(fixtures.MockPatch(
            'nova_clear.images.disk.create_overlay', side_effect=overlay))
        self.gc_during_spawn(self.instance())
        self.assertEqual([IMG], self.drv.image_cache.cached_ids())
        # Once the instance is gone, so is the image.
        self.drv.destroy(self.ctx, self.instance(), None)
        self.drv.manage_image_cache(self.ctx, [])
        self.assertEqual([], self.drv.image_cache.cached_ids())

    def test_unreferenced_rootfs_still_removed(self):
        rootfs = self.drv.rootfs_cache.get(self.archive, None)
        self.age(rootfs.path)
        self.drv.manage_image_cache(self.ctx, [])
        self.assertFalse(os.path.exists(rootfs.path))
        self.assertEqual([], os.listdir(os.path.join(
            self.drv.rootfs_cache.path, 'by-image')))


class TestLostRootfs(DriverCacheTestCase):

    def setUp(self):
        super().setUp()
        disk_images.ImageCache.get.return_value = self.archive

    def _lose_and_power_on(self, wipe):
        inst = self.instance()
        self.spawn(inst)
        path = self.drv._files(inst).rootfs_ref()
        self.drv.power_off(inst)
        wipe(path)
        self.drv.power_on(self.ctx, inst, None)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.assertTrue(os.path.exists(path))
        self.assertEqual(path, self.drv._files(inst).rootfs_ref())
        self.assertIn(path, self.xml(inst))
        self.assertEqual(2, self.builder.calls)
        return inst

    def test_rootfs_files_removed(self):
        def wipe(path):
            os.unlink(path)
            os.unlink(path[:-len('.ext4')] + '.json')
        self._lose_and_power_on(wipe)

    def test_cache_wiped(self):
        def wipe(path):
            shutil.rmtree(self.drv.rootfs_cache.path)
        inst = self._lose_and_power_on(wipe)
        # and a hard reboot after the next wipe
        shutil.rmtree(self.drv.rootfs_cache.path)
        self.drv.reboot(self.ctx, inst, None, 'HARD')
        self.assertEqual(3, self.builder.calls)
        self.assertTrue(os.path.exists(self.drv._files(inst).rootfs_ref()))

    def test_other_digest_refused(self):
        inst = self.instance()
        self.spawn(inst)
        files = self.drv._files(inst)
        self.drv.power_off(inst)
        files.write_rootfs_ref(os.path.join(self.drv.rootfs_cache.path,
                                            'f' * 64 + '.ext4'))
        err = self.assertRaises(exception.InstanceDeployFailure,
                                self.drv.power_on, self.ctx, inst, None)
        self.assertIn('f' * 64, str(err))
        self.assertEqual(power_state.SHUTDOWN, self.drv.get_info(inst).state)
