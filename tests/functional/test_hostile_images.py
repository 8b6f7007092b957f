"""Hostile container images built here, through the driver and the real
privsep daemon: each is an ImageUnacceptable naming layer and member,
nothing is left in the cache, the host outside it is untouched, and the
root daemon's memory stays bounded."""

import hashlib
import os

from nova import exception
from testtools import content as text_content

from nova_clear.images import tarstream
from nova_clear import privsep as clear_privsep
from tests.functional import base
from tests.functional import hostile

MiB = 1024 * 1024
# Peak RSS of the privsep daemon and of its unpacking child: a Python
# interpreter with nova's exceptions imported is ~35 MiB; tarfile keeping
# a TarInfo per member (what this bounds) needs ~100 MiB per 200,000
# members, a 100 MiB PAX header 100 MiB more.
RSS_BOUND_KIB = 96 * 1024


def _daemon_hwm_kib():
    """VmHWM of this test process's nova-clear privsep daemon."""
    conf = os.path.join(base.worker_dir(), 'privsep.conf')
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                cmd = f.read().split(b'\0')
            if b'nova_clear.privsep.clear_admin_pctxt' not in cmd or \
                    conf.encode() not in cmd:
                continue
            with open('/proc/%s/status' % pid) as f:
                for line in f:
                    if line.startswith('VmHWM:'):
                        return int(line.split()[1])
        except OSError:
            continue
    raise AssertionError('no nova-clear privsep daemon for %s' % conf)


class HostileImageTestCase(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        self.drv = self.make_driver()
        self.calls = []
        builder = self.drv.rootfs_cache._builder

        def recording(*args):
            self.calls.append(args)
            return builder(*args)
        self.drv.rootfs_cache._builder = recording

    def archive(self, name, layers, **kw):
        return hostile.docker_archive(os.path.join(self.tmp, name), layers,
                                      **kw)

    def refused(self, path, *texts, unpacked=False):
        """Spawn from ``path``: refused with ``texts`` in the fault,
        nothing left; the daemon asked only if ``unpacked``."""
        image = self.glance.add(path, 'raw', container_format='docker')
        inst = self.make_instance(image)
        err = self.assertRaises(exception.ImageUnacceptable, self.drv.spawn,
                                self.context, inst,
                                self.glance.image_meta(image), [], None, {})
        for text in texts:
            self.assertIn(text, str(err))
        self.assert_gone(self.drv, inst)
        self.assert_cache_clean()
        self.assertEqual(unpacked, bool(self.calls),
                         'the root daemon was%s asked to unpack' %
                         ('' if self.calls else ' not'))
        return err

    def assert_cache_clean(self):
        rootfs = self.drv.rootfs_cache.path
        left = [f for f in os.listdir(rootfs)
                if f not in ('locks', 'by-image', '.unpack')]
        self.assertEqual([], left)
        work = os.path.join(rootfs, '.unpack')
        if os.path.exists(work):
            self.assertEqual([], os.listdir(work))


class TestRefusedBeforeUnpacking(HostileImageTestCase):
    """Refused by the unprivileged pass: the daemon is never asked."""

    def test_layer_digest_mismatch(self):
        good = hostile.layer([('etc/motd', b'hello')])
        bad = hostile.layer([('etc/evil', b'not what was signed')])
        path = self.archive('digest.tar', [good, bad], diff_ids=[
            hashlib.sha256(good[0]).hexdigest(), '0' * 64])
        self.refused(path, 'digest mismatch for layer l1/layer.tar')

    def test_malformed_whiteout_names(self):
        for name in ('.wh..', '.wh...', 'etc/.wh.'):
            path = self.archive('wh.tar', [hostile.layer(
                [('etc/x', b'x'), (name, b'')])])
            self.refused(path, 'layer l0/layer.tar', 'member %s' % name,
                         'malformed whiteout name')

    def test_200000_empty_files(self):
        members = [hostile.entry('d%d/f%d' % (i // 1000, i))
                   for i in range(200000)]
        path = self.archive('many.tar', [hostile.layer(members, gz=True)])
        self.refused(path, 'layer l0/layer.tar', 'member d100/f100000',
                     'more than 100000 entries in one layer')

    def test_100_mib_pax_header(self):
        info = hostile.entry('f')
        info.pax_headers = {'comment': 'x' * (100 * MiB)}
        path = self.archive('pax.tar', [hostile.layer([info], gz=True)])
        self.assertLess(os.path.getsize(path), 2 * MiB)
        self.refused(path, 'layer l0/layer.tar',
                     'an extended header of 104857', 'at most 1048576')

    def test_2000_deep_path(self):
        path = self.archive('deep.tar', [hostile.layer(
            [('a/' * 2000 + 'f', b'')])])
        self.refused(path, 'layer l0/layer.tar', 'member a/a/a',
                     'deeper than 256 components')

    def test_1_mib_json_nesting(self):
        raw, blob = hostile.layer([('f', b'')])
        depth = MiB // 2
        config = (b'{"architecture": "amd64", "os": "linux", "x": ' +
                  b'[' * depth + b']' * depth + b'}')
        path = self.archive('json.tar', [(raw, blob)], config=config)
        err = self.refused(path, 'not acceptable JSON',
                           'nested deeper than 64 levels')
        self.assertIn('.json', str(err))


class TestPathAttacks(HostileImageTestCase):
    """Valid images whose members try to reach the host through a parent
    that a later member turns into a symlink: they unpack, and the decoy
    directory outside the cache stays as it was."""

    def setUp(self):
        super().setUp()
        self.decoy = os.path.join(self.tmp, 'decoy')
        os.makedirs(os.path.join(self.decoy, 'keep'))
        with open(os.path.join(self.decoy, 'keep', 'data'), 'w') as f:
            f.write('host data')
        self.before = self._state()

    def _state(self):
        st = os.stat(os.path.join(self.decoy, 'keep'))
        return (sorted(os.listdir(os.path.join(self.decoy, 'keep'))),
                st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime))

    def build(self, layers):
        path = self.archive('attack.tar', layers)
        image = self.glance.add(path, 'raw', container_format='docker')
        return self.drv.rootfs_cache.get(
            self.drv.image_cache.get(self.context,
                                     self.glance.image_meta(image)), None)

    def test_opaque_marker_then_symlinked_parent(self):
        rootfs = self.build([
            hostile.layer([('a/keep/lower', b'')]),
            hostile.layer([hostile.entry('a/keep/.wh..wh..opq'),
                           hostile.entry('a', 'sym', linkname=self.decoy)])])
        self.assertTrue(os.path.exists(rootfs.path))
        self.assertEqual(self.before, self._state())

    def test_directory_metadata_then_symlinked_parent(self):
        self.build([hostile.layer([
            hostile.entry('a/keep', 'dir', mode=0o777, uid=4242, gid=4242,
                          mtime=0),
            hostile.entry('a', 'sym', linkname=self.decoy)])])
        self.assertEqual(self.before, self._state())


class TestDaemonMemory(HostileImageTestCase):
    """The daemon bounds what it reads by itself, whatever it is given
    (here called directly, without the unprivileged pass)."""

    def call_daemon(self, path, limits=None):
        rootfs = self.drv.rootfs_cache.path
        os.makedirs(rootfs, exist_ok=True)
        dest = os.path.join(rootfs, 'a' * 64 + '.ext4.part')
        return dest, clear_privsep.build_rootfs(
            path, 'img', dest, (limits or tarstream.Limits()).to_dict())

    def test_many_members_and_big_headers_in_bounded_memory(self):
        # at the cap: 100,000 members, each with a PAX header
        members = []
        for i in range(100000):
            info = hostile.entry('d%d/%s%d' % (i // 1000, 'n' * 120, i))
            info.pax_headers = {'SCHILY.xattr.user.x': 'y'}
            members.append(info)
        path = self.archive('cap.tar', [hostile.layer(members, gz=True)])
        dest, built = self.call_daemon(path)
        self.addCleanup(os.unlink, dest)
        self.assertEqual(100100 + 1, built['entries'])
        hwm = _daemon_hwm_kib()
        self.addDetail('peak_rss', text_content.text_content(
            'unpacking child %d KiB, daemon %d KiB (bound %d KiB)' %
            (built['unpack_peak_rss_kib'], hwm, RSS_BOUND_KIB)))
        self.assertLess(built['unpack_peak_rss_kib'], RSS_BOUND_KIB)
        self.assertLess(hwm, RSS_BOUND_KIB)
        self.assertEqual(0o444, os.stat(dest).st_mode & 0o777)

    def test_refused_inside_the_daemon(self):
        members = [hostile.entry('f%d' % i) for i in range(200000)]
        path = self.archive('many.tar', [hostile.layer(members, gz=True)])
        err = self.assertRaises(exception.ImageUnacceptable,
                                self.call_daemon, path)
        self.assertIn('member f100000', str(err))
        info = hostile.entry('f')
        info.pax_headers = {'comment': 'x' * (100 * MiB)}
        path = self.archive('pax.tar', [hostile.layer([info], gz=True)])
        err = self.assertRaises(exception.ImageUnacceptable,
                                self.call_daemon, path)
        self.assertIn('extended header', str(err))
        self.assert_cache_clean()
        self.assertLess(_daemon_hwm_kib(), RSS_BOUND_KIB)

    def test_paths_outside_the_cache_refused(self):
        path = self.archive('ok.tar', [hostile.layer([('f', b'')])])
        outside = os.path.join(self.tmp, '..', 'x' * 64 + '.ext4.part')
        rootfs = self.drv.rootfs_cache.path
        os.makedirs(rootfs, exist_ok=True)
        for archive, dest in (
                ('/etc/passwd', os.path.join(rootfs, 'b' * 64 +
                                             '.ext4.part')),
                (path, outside),
                (path, os.path.join(rootfs, 'passwd'))):
            self.assertRaises(PermissionError, clear_privsep.build_rootfs,
                              archive, 'img', dest,
                              tarstream.Limits().to_dict())
        self.assertFalse(os.path.exists(outside))
        # the part is created exclusively, never through a link
        target = os.path.join(self.tmp, 'target')
        link = os.path.join(rootfs, 'c' * 64 + '.ext4.part')
        os.symlink(target, link)
        self.assertRaises(FileExistsError, clear_privsep.build_rootfs, path,
                          'img', link, tarstream.Limits().to_dict())
        self.assertFalse(os.path.exists(target))
        os.unlink(link)
