"""Hostile container layers against the applier: the host outside the
unpack root stays untouched (a decoy directory beside the root is
watched), malformed members are refused naming layer and member."""

import io
import os
import tarfile

import fixtures
import testtools

from nova_clear import exception as clear_exc
from nova_clear.images import layers
from nova_clear.images import tarstream
from tests.unit import test_container


def _snapshot(top):
    """Everything under ``top``: path -> (mode, uid, gid, mtime)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [''] + dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            seen[p] = (st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime))
    return seen


class HostileTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.top = self.useFixture(fixtures.TempDir()).path
        # <top>/root is unpacked into; <top>/decoy and <top>/other-tenant
        # stand for the host and other images' caches
        self.root = os.path.join(self.top, 'root')
        os.mkdir(self.root)
        self.decoy = os.path.join(self.top, 'decoy')
        os.makedirs(os.path.join(self.decoy, 'keep', 'deeper'))
        with open(os.path.join(self.decoy, 'keep', 'deeper', 'f'), 'w') as f:
            f.write('host data')
        os.makedirs(os.path.join(self.top, 'other-tenant', 'rootfs'))
        self.before = _snapshot(self.decoy)
        self.before.update(_snapshot(os.path.join(self.top, 'other-tenant')))
        self.applier = layers.LayerApplier(self.root, 'img',
                                           chown=os.geteuid() == 0)
        self.addCleanup(self.applier.close)

    def apply(self, *layer_list):
        for i, entries in enumerate(layer_list):
            self.applier.apply('layer%d' % i,
                               io.BytesIO(test_container._tar(entries)))
        self.applier.finish()

    def assertHostUntouched(self):
        after = _snapshot(self.decoy)
        after.update(_snapshot(os.path.join(self.top, 'other-tenant')))
        self.assertEqual(self.before, after)


class TestPathAttacks(HostileTestCase):

    def test_opaque_marker_then_parent_becomes_symlink(self):
        # a/keep/.wh..wh..opq, then a -> <decoy>: the opaque marker must
        # empty the image's own a/keep, never <decoy>/keep
        self.apply([('a/keep/lower', 'file', {})],
                   [('a/keep/.wh..wh..opq', 'file', {}),
                    ('a', 'sym', {'to': self.decoy})])
        self.assertHostUntouched()
        self.assertEqual(self.decoy, os.readlink(os.path.join(self.root,
                                                              'a')))

    def test_directory_metadata_then_parent_becomes_symlink(self):
        # a/keep (mode 0777, owner 4242, old mtime), then a -> <decoy>:
        # finish() must not chmod/chown <decoy>/keep
        self.apply([('a/keep', 'dir', {'mode': 0o777, 'uid': 4242,
                                       'gid': 4242}),
                    ('a', 'sym', {'to': self.decoy})])
        self.assertHostUntouched()

    def test_whiteout_through_replaced_parent(self):
        err = self.assertRaises(
            clear_exc.LayerRefused, self.apply,
            [('a', 'sym', {'to': self.decoy}), ('a/.wh.keep', 'file', {})])
        self.assertIn('a/.wh.keep', str(err))
        self.assertHostUntouched()

    def test_malformed_whiteout_names(self):
        for name in ('.wh.', '.wh..', '.wh...', 'sub/.wh..', 'sub/.wh...'):
            err = self.assertRaises(clear_exc.LayerRefused, self.apply,
                                    [('sub/x', 'file', {}),
                                     (name, 'file', {})])
            self.assertIn('malformed whiteout name', str(err))
            self.assertIn('layer0', str(err))
            self.assertIn(name, str(err))
        self.assertHostUntouched()
        self.assertTrue(os.path.isdir(self.root))

    def test_hard_link_through_symlink(self):
        err = self.assertRaises(
            clear_exc.LayerRefused, self.apply,
            [('a', 'sym', {'to': self.decoy}),
             ('h', 'link', {'to': 'a/keep/deeper/f'})])
        self.assertIn('member h', str(err))
        self.assertHostUntouched()


class TestBounds(HostileTestCase):

    def test_entries_per_layer_and_image(self):
        self.applier.limits = tarstream.Limits(layer_entries=10,
                                               image_entries=15)
        err = self.assertRaises(
            clear_exc.LayerRefused, self.apply,
            [('f%d' % i, 'file', {}) for i in range(11)])
        self.assertIn('more than 10 entries in one layer', str(err))
        self.assertIn('member f10', str(err))
        applier = layers.LayerApplier(self.root, 'img', limits=self.applier
                                      .limits, chown=False)
        self.addCleanup(applier.close)
        applier.apply('l0', io.BytesIO(test_container._tar(
            [('g%d' % i, 'file', {}) for i in range(10)])))
        err = self.assertRaises(
            clear_exc.LayerRefused, applier.apply, 'l1', io.BytesIO(
                test_container._tar([('h%d' % i, 'file', {})
                                     for i in range(10)])))
        self.assertIn('more than 15 entries in the image', str(err))

    def test_path_depth(self):
        err = self.assertRaises(clear_exc.LayerRefused, self.apply,
                                [('a/' * 300 + 'f', 'file', {})])
        self.assertIn('deeper than 256', str(err))
        self.assertEqual([], os.listdir(self.root))

    def test_oversized_pax_header_is_not_read(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w',
                          format=tarfile.PAX_FORMAT) as t:
            info = tarfile.TarInfo('big')
            info.pax_headers = {'comment': 'x' * (2 * 1024 * 1024)}
            t.addfile(info, io.BytesIO(b''))
        err = self.assertRaises(clear_exc.LayerRefused, self.applier.apply,
                                'l0', io.BytesIO(buf.getvalue()))
        self.assertIn('extended header of', str(err))

    def test_chained_extended_headers(self):
        one = io.BytesIO()
        with tarfile.open(fileobj=one, mode='w',
                          format=tarfile.PAX_FORMAT) as t:
            info = tarfile.TarInfo('f')
            info.pax_headers = {'comment': 'x'}
            t.addfile(info, io.BytesIO(b''))
        pax_header = one.getvalue()[:1024]     # header block + its data
        data = pax_header * 20 + one.getvalue()
        err = self.assertRaises(clear_exc.LayerRefused, self.applier.apply,
                                'l0', io.BytesIO(data))
        self.assertIn('more than 8 extended headers', str(err))

    def test_tarfile_keeps_no_member_list(self):
        applier = self.applier
        stream = io.BytesIO(test_container._tar(
            [('f%d' % i, 'file', {}) for i in range(50)]))
        seen = []
        for tar, member in tarstream.members(stream, 'l0', applier.limits,
                                             [0]):
            seen.append(len(tar.members))
        self.assertEqual([0] * 50, seen)
