"""Container images without daemons: layers, archives, workloads."""

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile

import fixtures
import testtools

from nova import exception

from nova_clear import exception as clear_exc
from nova_clear.images import layers
from nova_clear.images import oci
from nova_clear.images import tarstream
from nova_clear.images import workload


def _tar(entries):
    """entries: (name, kind, extra) with kind file/dir/sym/link/chr/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            data = b''
            info.mode = extra.get('mode', 0o644)
            info.uid = extra.get('uid', 0)
            info.gid = extra.get('gid', 0)
            info.mtime = 1700000000
            if kind == 'file':
                data = extra.get('data', b'data')
                info.size = len(data)
            elif kind == 'dir':
                info.type = tarfile.DIRTYPE
                info.mode = extra.get('mode', 0o755)
            elif kind == 'sym':
                info.type = tarfile.SYMTYPE
                info.linkname = extra['to']
            elif kind == 'link':
                info.type = tarfile.LNKTYPE
                info.linkname = extra['to']
            elif kind == 'chr':
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            elif kind == 'fifo':
                info.type = tarfile.FIFOTYPE
            if 'xattrs' in extra:
                info.pax_headers = {'SCHILY.xattr.' + k: v
                                    for k, v in extra['xattrs'].items()}
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class LayerTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                 'root')
        os.mkdir(self.root)
        self.applier = layers.LayerApplier(self.root, 'img', chown=False)
        self.addCleanup(self.applier.close)

    def apply(self, *layer_list):
        for i, entries in enumerate(layer_list):
            self.applier.apply('layer%d' % i, io.BytesIO(_tar(entries)))
        self.applier.finish()

    def p(self, rel):
        return os.path.join(self.root, rel)


class TestLayers(LayerTestCase):

    def test_files_dirs_modes_symlinks_hardlinks(self):
        self.apply([('bin', 'dir', {}),
                    ('bin/tool', 'file', {'data': b'#!', 'mode': 0o4755}),
                    ('bin/alias', 'sym', {'to': 'tool'}),
                    ('bin/hard', 'link', {'to': 'bin/tool'}),
                    ('etc/conf', 'file', {'mode': 0o600}),
                    ('run/fifo', 'fifo', {}),
                    ('private', 'dir', {'mode': 0o700})])
        self.assertEqual(0o4755, os.stat(self.p('bin/tool')).st_mode & 0o7777)
        self.assertEqual('tool', os.readlink(self.p('bin/alias')))
        self.assertEqual(os.stat(self.p('bin/tool')).st_ino,
                         os.stat(self.p('bin/hard')).st_ino)
        self.assertEqual(0o600, os.stat(self.p('etc/conf')).st_mode & 0o777)
        self.assertTrue(stat.S_ISFIFO(os.lstat(self.p('run/fifo')).st_mode))
        self.assertEqual(0o700, os.stat(self.p('private')).st_mode & 0o777)
        self.assertEqual(1700000000, int(os.stat(self.p('bin/tool')).st_mtime))

    def test_whiteout_removes_lower_file_and_dir(self):
        self.apply([('a/keep', 'file', {}), ('a/gone', 'file', {}),
                    ('d/sub/x', 'file', {})],
                   [('a/.wh.gone', 'file', {}), ('.wh.d', 'file', {})])
        self.assertTrue(os.path.exists(self.p('a/keep')))
        self.assertFalse(os.path.lexists(self.p('a/gone')))
        self.assertFalse(os.path.lexists(self.p('d')))
        self.assertFalse(os.path.lexists(self.p('a/.wh.gone')))

    def test_opaque_directory_hides_lower_only(self):
        self.apply([('etc/old1', 'file', {}), ('etc/sub/old2', 'file', {})],
                   # the new file comes before the marker in the tar
                   [('etc/new', 'file', {}), ('etc/.wh..wh..opq', 'file', {})])
        self.assertEqual(['new'], os.listdir(self.p('etc')))

    def test_later_layer_replaces_type(self):
        self.apply([('x', 'dir', {}), ('x/y', 'file', {})],
                   [('x', 'file', {'data': b'now a file'})])
        with open(self.p('x'), 'rb') as f:
            self.assertEqual(b'now a file', f.read())

    def test_xattrs_kept(self):
        self.apply([('f', 'file', {'xattrs': {'user.nova': 'clear'}})])
        self.assertEqual(b'clear', os.getxattr(self.p('f'), 'user.nova'))

    def test_owners_kept_when_privileged(self):
        if os.geteuid() != 0:
            self.skipTest('chown needs root (the privsep daemon has it)')
        self.applier.chown = True
        self.apply([('data', 'dir', {'uid': 1000, 'gid': 1000}),
                    ('data/f', 'file', {'uid': 1000, 'gid': 100})])
        st = os.stat(self.p('data/f'))
        self.assertEqual((1000, 100), (st.st_uid, st.st_gid))
        self.assertEqual(1000, os.stat(self.p('data')).st_uid)


class TestLayerRefusals(LayerTestCase):

    def refused(self, entries, member, text):
        err = self.assertRaises(clear_exc.LayerRefused, self.apply, entries)
        self.assertIn(member, str(err))
        self.assertIn(text, str(err))

    def test_absolute_path(self):
        self.refused([('/etc/passwd', 'file', {})], '/etc/passwd',
                     'leaves the root')

    def test_dotdot(self):
        self.refused([('a/../../x', 'file', {})], 'a/../../x',
                     'leaves the root')

    def test_symlink_escape(self):
        self.refused([('a/b', 'sym', {'to': '../../outside'})], 'a/b',
                     'leaves the root')

    def test_write_through_symlink(self):
        outside = self.useFixture(fixtures.TempDir()).path
        self.refused([('link', 'sym', {'to': '/'}),
                      ('link/escape', 'file', {})], 'link/escape',
                     'goes through link')
        # and the symlink's absolute target is not followed on the host
        os.symlink(outside, self.p('host-link'))
        self.refused([('host-link/x', 'file', {})], 'host-link/x',
                     'goes through host-link, which is a symlink')
        self.assertEqual([], os.listdir(outside))

    def test_hardlink_escape_or_missing(self):
        self.refused([('h', 'link', {'to': '../etc/shadow'})], 'h',
                     'leaves the root')
        self.refused([('h', 'link', {'to': 'nothing'})], 'h', 'missing')

    def test_device_node(self):
        self.refused([('dev/null', 'chr', {})], 'dev/null', 'device nodes')

    def test_size_limit(self):
        self.applier.limits = tarstream.Limits(unpacked_bytes=10)
        self.refused([('big', 'file', {'data': b'x' * 11})], 'big',
                     'unpacks to more than 10 bytes')

    def test_truncated_tar(self):
        data = _tar([('f', 'file', {'data': b'y' * 5000})])[:3000]
        err = self.assertRaises(clear_exc.LayerRefused,
                                self.applier.apply, 'l0', io.BytesIO(data))
        self.assertIn('l0', str(err))

    def test_refusals_are_image_faults(self):
        for cls in (clear_exc.LayerRefused, clear_exc.InvalidContainerImage,
                    clear_exc.InvalidWorkload):
            self.assertTrue(issubclass(cls, exception.ImageUnacceptable))


def _write_tar(path, members):
    with tarfile.open(path, 'w') as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _sha(data):
    return hashlib.sha256(data).hexdigest()


class TestArchives(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.layer = _tar([('hello', 'file', {'data': b'hi'})])
        self.config = {'architecture': 'amd64', 'os': 'linux',
                       'config': {'Cmd': ['/hello']},
                       'rootfs': {'type': 'layers',
                                  'diff_ids': ['sha256:' +
                                               _sha(self.layer)]}}

    def oci(self, name='oci.tar', gz=True, mutate=None):
        blob = gzip.compress(self.layer, mtime=0) if gz else self.layer
        config = json.dumps(self.config).encode()
        manifest = {
            'schemaVersion': 2, 'mediaType': oci.OCI_MANIFEST,
            'config': {'mediaType': oci.CONFIG_TYPES[0],
                       'digest': 'sha256:' + _sha(config),
                       'size': len(config)},
            'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.'
                                     'tar' + ('+gzip' if gz else ''),
                        'digest': 'sha256:' + _sha(blob),
                        'size': len(blob)}]}
        if mutate:
            mutate(manifest)
        mdata = json.dumps(manifest).encode()
        index = {'schemaVersion': 2, 'manifests': [
            {'mediaType': oci.OCI_MANIFEST, 'digest': 'sha256:' + _sha(mdata),
             'size': len(mdata)}]}
        path = os.path.join(self.dir, name)
        _write_tar(path, [
            ('oci-layout', b'{"imageLayoutVersion": "1.0.0"}'),
            ('index.json', json.dumps(index).encode()),
            ('blobs/sha256/' + _sha(mdata), mdata),
            ('blobs/sha256/' + _sha(config), config),
            ('blobs/sha256/' + _sha(blob), blob)])
        return path

    def test_oci_layout(self):
        path = self.oci()
        self.assertTrue(oci.is_container_archive(path))
        arc = oci.open_archive(path, 'img')
        self.assertEqual('oci-layout', arc.kind)
        self.assertEqual(['/hello'], arc.config['config']['Cmd'])
        self.assertEqual('gzip', arc.layers[0].compression)
        names = []
        for _layer, stream in oci.layer_streams(arc, path):
            with tarfile.open(fileobj=stream, mode='r|') as tar:
                names += [m.name for m in tar]
        self.assertEqual(['hello'], names)

    def test_unknown_layer_media_type(self):
        def bad(m):
            m['layers'][0]['mediaType'] = 'application/x-evil'
        err = self.assertRaises(clear_exc.InvalidContainerImage,
                                oci.open_archive, self.oci(mutate=bad), 'img')
        self.assertIn('unknown layer media type', str(err))

    def test_layer_digest_mismatch(self):
        self.config['rootfs']['diff_ids'] = ['sha256:' + '0' * 64]
        path = self.oci(gz=False)
        arc = oci.open_archive(path, 'img')

        def consume():
            for _layer, stream in oci.layer_streams(arc, path):
                stream.read()
        err = self.assertRaises(clear_exc.InvalidContainerImage, consume)
        self.assertIn('digest mismatch', str(err))
        # and the unprivileged pass refuses it before anything is unpacked
        err = self.assertRaises(clear_exc.InvalidContainerImage, oci.verify,
                                arc, tarstream.Limits())
        self.assertIn('digest mismatch', str(err))

    def test_missing_config_and_not_an_archive(self):
        path = os.path.join(self.dir, 'noconfig.tar')
        _write_tar(path, [('manifest.json',
                           b'[{"Config": "c.json", "Layers": []}]')])
        err = self.assertRaises(clear_exc.InvalidContainerImage,
                                oci.open_archive, path, 'img')
        self.assertIn('c.json is missing', str(err))
        junk = os.path.join(self.dir, 'junk')
        with open(junk, 'wb') as f:
            f.write(os.urandom(4096))
        self.assertFalse(oci.is_container_archive(junk))
        err = self.assertRaises(clear_exc.InvalidContainerImage,
                                oci.open_archive, junk, 'img')
        self.assertIn('malformed tar', str(err))

    def test_wrong_architecture(self):
        self.config['architecture'] = 'arm64'
        err = self.assertRaises(clear_exc.InvalidContainerImage,
                                oci.open_archive, self.oci(), 'img')
        self.assertIn('arm64', str(err))


class TestWorkload(testtools.TestCase):

    CONFIG = {'config': {'Entrypoint': ['/bin/app'], 'Cmd': ['--serve'],
                         'Env': ['A=1', 'PATH=/bin'], 'WorkingDir': '/srv',
                         'User': 'app'}}

    def test_image_config(self):
        wl = workload.resolve(self.CONFIG, {}, 'img')
        self.assertEqual(('/bin/app', '--serve'), wl.argv)
        self.assertEqual(('A=1', 'PATH=/bin'), wl.env)
        self.assertEqual(('/srv', 'app'), (wl.workdir, wl.user))

    def test_overrides(self):
        wl = workload.resolve(self.CONFIG, {
            'clear_entrypoint': '["/bin/sh", "-c"]',
            'clear_env': 'A=2 B="x y"', 'clear_workdir': '/',
            'clear_user': '0'}, 'img')
        # A new entrypoint drops the image's Cmd, as docker does.
        self.assertEqual(('/bin/sh', '-c'), wl.argv)
        self.assertEqual(('A=2', 'PATH=/bin', 'B=x y'), wl.env)
        wl = workload.resolve(self.CONFIG, {'clear_cmd': 'a "b c"'}, 'img')
        self.assertEqual(('/bin/app', 'a', 'b c'), wl.argv)

    def test_spec_files(self):
        files = workload.spec_files(workload.resolve(self.CONFIG, {}, 'i'))
        self.assertEqual(b'/bin/app\n--serve\n', files['argv'])
        self.assertEqual(b'app\n', files['user'])

    def test_refusals(self):
        for config, props, text in (
                ({'config': {}}, {}, 'neither Entrypoint nor Cmd'),
                (self.CONFIG, {'clear_workdir': 'rel'}, 'not absolute'),
                (self.CONFIG, {'clear_cmd': '["a\\nb"]'}, 'newlines'),
                (self.CONFIG, {'clear_cmd': '[1'}, 'not a JSON list'),
                (self.CONFIG, {'clear_cmd': '[' * 100 + ']' * 100},
                 'nested deeper than 64'),
                (self.CONFIG, {'clear_env': '{"a": [' + '[' * 99 + ']' * 100
                               + '}'}, 'nested deeper than 64'),
                ({'config': {'Cmd': ['x'], 'Env': ['NOEQ']}}, {},
                 'not NAME=value')):
            err = self.assertRaises(clear_exc.InvalidWorkload,
                                    workload.resolve, config, props, 'img')
            self.assertIn(text, str(err))
