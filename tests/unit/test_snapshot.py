"""Snapshots: the layer of a container instance's changes (whiteouts,
opaque directories, hard links), the committed image config and archive,
and the driver's steps with fakes (task states, pause, failures)."""

import hashlib
import json
import os
import stat
import subprocess
import tarfile
from unittest import mock
import uuid

import fixtures
from oslo_config import fixture as config_fixture
import testtools

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import exception
from nova import objects

from nova_clear.images import commit
from nova_clear.images import oci
from nova_clear.images import tarstream
from nova_clear import snapshot
from nova_clear import storage
from tests.functional import hostile

CONF = nova.conf.CONF
objects.register_all()
N = commit.Node


def names(members):
    return [(i.name, i.type) for i, _s in members]


class TestLayerMembers(testtools.TestCase):

    def test_whiteout_opaque_hardlink_order(self):
        nodes = [N('tmp/b', 'file', ino=7, source='/x/b'),
                 N('tmp', 'dir', 0o1777),
                 N('bin/sleep', 'whiteout', ino=5),
                 N('data', 'dir', opaque=True, ino=4),
                 N('data/new', 'file', ino=9, source='/x/new'),
                 N('tmp/a', 'file', ino=7, source='/x/a'),
                 N('bin', 'dir', ino=3),
                 N('tmp/link', 'symlink', linkname='../bin/busybox', ino=8)]
        members = commit.layer_members(nodes)
        self.assertEqual([
            ('bin', tarfile.DIRTYPE),
            ('bin/.wh.sleep', tarfile.REGTYPE),
            ('data', tarfile.DIRTYPE),
            ('data/.wh..wh..opq', tarfile.REGTYPE),
            ('data/new', tarfile.REGTYPE),
            ('tmp', tarfile.DIRTYPE),
            ('tmp/a', tarfile.REGTYPE),
            ('tmp/b', tarfile.LNKTYPE),
            ('tmp/link', tarfile.SYMTYPE)], names(members))
        by_name = {i.name: (i, s) for i, s in members}
        self.assertEqual('tmp/a', by_name['tmp/b'][0].linkname)
        self.assertEqual('/x/a', by_name['tmp/a'][1])
        self.assertIsNone(by_name['tmp/b'][1])
        self.assertEqual(0o1777, by_name['tmp'][0].mode)
        self.assertEqual('../bin/busybox', by_name['tmp/link'][0].linkname)
        # what the layer rules make of them
        kinds = [tarstream.check_member('l', i, tarstream.Limits()).kind
                 for i, _s in members]
        self.assertEqual('whiteout', kinds[1])
        self.assertEqual('opaque', kinds[3])

    def test_agent_files_left_out(self):
        nodes = [N('.nova-clear', 'dir'), N('.nova-clear/run', 'file'),
                 N('etc', 'dir'), N('etc/resolv.conf', 'file'),
                 N('etc/hosts', 'file'), N('root/.ssh/authorized_keys',
                                           'file')]
        self.assertEqual(['etc', 'etc/hosts', 'root/.ssh/authorized_keys'],
                         [i.name for i, _s in commit.layer_members(nodes)])
        self.assertEqual(['etc', 'etc/hosts'], [
            i.name for i, _s in commit.layer_members(
                nodes, commit.EXCLUDED + (commit.AGENT_KEYS,))])

    def test_wh_names_refused_sockets_skipped(self):
        self.assertRaises(commit.CommitFailed, commit.layer_members,
                          [N('tmp/.wh.x', 'file')])
        self.assertEqual([], commit.layer_members(
            [N('s', 'socket'), N('dev/null', 'chr', rdev=(1, 3)),
             N('dev/sda', 'blk', rdev=(8, 0))]))
        (info, _s), = commit.layer_members([N('run/fifo', 'fifo')])
        self.assertEqual(tarfile.FIFOTYPE, info.type)


class TestDebugfsOutput(testtools.TestCase):

    def test_names_with_newlines_cannot_pass_for_commands(self):
        out = (b'/12/040755/0/0/.//\n/2/040755/0/0/..//\n'
               # a name can hold anything but '/'
               b'/13/100644/1000/1000/evil\ndebugfs: ls -p <2>\n/5/\n'
               b'/14/100644/0/0/next/1/\n\ndebugfs: ls -p <3>\n')
        entries, end = commit.parse_ls(out)
        self.assertTrue(out[end:].startswith(b'debugfs: ls -p <3>'))
        self.assertEqual([(13, 0o100644, 1000, 1000,
                           b'evil\ndebugfs: ls -p <2>\n'),
                          (14, 0o100644, 0, 0, b'next')],
                         [(e[0], e[1], e[2], e[3], e[4]) for e in entries])

    def test_garbage_refused(self):
        self.assertRaises(commit.CommitFailed, commit.parse_ls,
                          b'/1/2/zz\n')


class TestReadUpper(testtools.TestCase):
    """debugfs on a real ext4 laid out as the agent leaves it."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest('mknod of a whiteout needs root')
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def test_read(self):
        tree = os.path.join(self.tmp, 'tree')
        upper = os.path.join(tree, 'upper')
        for d in ('nova-clear', 'upper/bin', 'upper/data', 'upper/tmp',
                  'upper/.nova-clear', 'work'):
            os.makedirs(os.path.join(tree, d))
        with open(os.path.join(tree, 'nova-clear', 'authorized_keys'),
                  'w') as f:
            f.write('ssh-ed25519 AAAA k\n')
        with open(os.path.join(upper, 'tmp', 'made'), 'w') as f:
            f.write('made\n')
        os.chown(os.path.join(upper, 'tmp', 'made'), 1000, 1001)
        os.chmod(os.path.join(upper, 'tmp', 'made'), 0o4750)
        os.link(os.path.join(upper, 'tmp', 'made'),
                os.path.join(upper, 'tmp', 'again'))
        os.symlink('busybox', os.path.join(upper, 'tmp', 'sh'))
        weird = 'new\nline'
        with open(os.path.join(upper, 'tmp', weird), 'w') as f:
            f.write('w')
        os.mknod(os.path.join(upper, 'bin', 'sleep'), stat.S_IFCHR | 0o644,
                 os.makedev(0, 0))
        os.setxattr(os.path.join(upper, 'data'), 'trusted.overlay.opaque',
                    b'y')
        image = os.path.join(self.tmp, 'upper.img')
        with open(image, 'wb') as f:
            f.truncate(16 << 20)
        subprocess.run(['mkfs.ext4', '-q', '-F', '-d', tree, image],
                       check=True)
        work = os.path.join(self.tmp, 'work')
        os.mkdir(work)
        nodes, keys = commit.read_upper(image, work)
        self.assertTrue(keys)
        got = {n.path: n for n in nodes}
        self.assertEqual('whiteout', got['bin/sleep'].kind)
        self.assertTrue(got['data'].opaque)
        self.assertFalse(got['tmp'].opaque)
        made = got['tmp/made']
        self.assertEqual((0o4750, 1000, 1001), (made.mode, made.uid,
                                                made.gid))
        self.assertEqual(made.ino, got['tmp/again'].ino)
        self.assertEqual('busybox', got['tmp/sh'].linkname)
        self.assertIn('tmp/' + weird, got)
        with open(made.source) as f:
            self.assertEqual('made\n', f.read())
        members = commit.layer_members(nodes)
        self.assertNotIn('.nova-clear', [i.name for i, _s in members])
        layer = os.path.join(work, 'layer.tar')
        diff_id = commit.write_layer(members, layer)
        with open(layer, 'rb') as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), diff_id)
        with tarfile.open(layer) as t:
            self.assertEqual(b'made\n', t.extractfile('tmp/again').read())
            self.assertIn('bin/.wh.sleep', t.getnames())
            self.assertIn('data/.wh..wh..opq', t.getnames())


class TestCommitImage(testtools.TestCase):

    def test_config_keeps_the_workload(self):
        config = {'architecture': 'amd64', 'os': 'linux',
                  'config': {'Entrypoint': ['/bin/sh', '-c'],
                             'Cmd': ['echo hi'], 'Env': ['A=1']},
                  'rootfs': {'type': 'layers', 'diff_ids': ['sha256:aa']},
                  'history': [{'created_by': 'base'}]}
        new = commit.commit_config(config, 'bb', 'snapshot of x')
        self.assertEqual(['sha256:aa', 'sha256:bb'],
                         new['rootfs']['diff_ids'])
        self.assertEqual(config['config'], new['config'])
        self.assertEqual(2, len(new['history']))
        self.assertEqual('snapshot of x', new['history'][1]['comment'])
        self.assertEqual(['sha256:aa'], config['rootfs']['diff_ids'])

    def test_archive_readable_and_verified(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        original = hostile.docker_archive(
            os.path.join(tmp, 'orig.tar'),
            [hostile.layer([hostile.entry('data', 'dir'),
                            ('data/greeting', b'hello\n')], gz=True)])
        raw, _blob = hostile.layer([hostile.entry('data', 'dir'),
                                    ('data/.wh.greeting', b''),
                                    ('data/new', b'new\n')])
        layer = os.path.join(tmp, 'layer.tar')
        with open(layer, 'wb') as f:
            f.write(raw)
        diff_id = hashlib.sha256(raw).hexdigest()
        out = os.path.join(tmp, 'out.tar')
        digest = commit.write_archive(original, 'img', layer, diff_id,
                                      'c', out)
        archive = oci.open_archive(out, 'snap')
        self.assertEqual(digest, archive.digest)
        self.assertEqual(('docker-archive', 2), (archive.kind,
                                                 len(archive.layers)))
        self.assertEqual(['gzip', None],
                         [la.compression for la in archive.layers])
        self.assertEqual(diff_id, archive.layers[1].diff_id)
        self.assertEqual(['/bin/sh'], archive.config['config']['Cmd'])
        self.assertGreater(oci.verify(archive, tarstream.Limits()), 0)
        with tarfile.open(out) as t:
            self.assertEqual([{'Config': digest + '.json', 'RepoTags': None,
                               'Layers': [la.name
                                          for la in archive.layers]}],
                             json.load(t.extractfile('manifest.json')))


class FakeGuest:
    name = 'instance-00000001'

    def __init__(self, state=power_state.RUNNING):
        self.state = state
        self.calls = []

    def get_power_state(self):
        return self.state

    def pause(self):
        self.calls.append('pause')

    def resume(self):
        self.calls.append('resume')


class FakeImageAPI:

    def __init__(self, fail=None):
        self.updates = []
        self.fail = fail

    def get(self, context, image_id):
        return {'id': image_id, 'name': 'my-snap'}

    def update(self, context, image_id, metadata, data=None,
               purge_props=True):
        if self.fail:
            raise self.fail
        self.updates.append((image_id, metadata, data.read(), purge_props))


class TestSnapshotter(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.instance = objects.Instance(
            id=1, uuid=str(uuid.uuid4()), project_id='p', user_id='u',
            image_ref='5a1ec0de-0000-4000-8000-000000000001',
            os_type='linux', kernel_id='', ramdisk_id='',
            system_metadata={'image_container_format': 'bare',
                             'image_disk_format': 'raw'})
        self.files = storage.InstanceFiles(self.tmp, self.instance.uuid)
        self.files.create()
        with open(self.files.disk, 'wb') as f:
            f.write(b'overlay')
        self.guest = FakeGuest()
        self.driver = mock.Mock()
        self.driver.host.find.return_value = self.guest
        self.driver._files.return_value = self.files
        self.states = []
        self.lock = mock.MagicMock()

    def update_task_state(self, task_state,
                          expected_state=task_states.IMAGE_SNAPSHOT):
        self.states.append((task_state, expected_state,
                            list(self.guest.calls)))

    def _flatten(self, copy, dest, fmt):
        with open(copy, 'rb') as f, open(dest, 'wb') as out:
            out.write(f.read() + b'+base as ' + fmt.encode())

    def _run(self, api):
        with mock.patch.object(snapshot, 'flatten', self._flatten):
            snapshot.Snapshotter(self.driver, api).snapshot(
                None, self.instance, 'snap', self.update_task_state,
                self.lock)

    def _left(self):
        return [f for f in os.listdir(self.files.dir)
                if f.startswith('snapshot-')]

    def test_disk_snapshot_steps(self):
        api = FakeImageAPI()
        self._run(api)
        self.assertEqual([
            (task_states.IMAGE_PENDING_UPLOAD, task_states.IMAGE_SNAPSHOT,
             []),
            (task_states.IMAGE_UPLOADING, task_states.IMAGE_PENDING_UPLOAD,
             ['pause', 'resume'])], self.states)
        (image_id, meta, data, purge), = api.updates
        self.assertEqual(('snap', b'overlay+base as qcow2', False),
                         (image_id, data, purge))
        self.assertEqual({'status': 'active', 'name': 'my-snap',
                          'disk_format': 'qcow2',
                          'container_format': 'bare',
                          'properties': {'image_location': 'snapshot',
                                         'image_state': 'available',
                                         'owner_id': 'p',
                                         'os_type': 'linux'}}, meta)
        self.lock.__enter__.assert_called_once_with()
        self.assertEqual([], self._left())

    def test_configured_format(self):
        self.conf.config(snapshot_image_format='raw', group='libvirt')
        api = FakeImageAPI()
        self._run(api)
        self.assertEqual('raw', api.updates[0][1]['disk_format'])
        self.assertTrue(api.updates[0][2].endswith(b'as raw'))

    def test_stopped_guest_not_paused(self):
        self.guest.state = power_state.SHUTDOWN
        self._run(FakeImageAPI())
        self.assertEqual([], self.guest.calls)

    def test_upload_failure_resumed_and_cleaned(self):
        api = FakeImageAPI(fail=exception.ImageNotFound(image_id='snap'))
        self.assertRaises(exception.ImageNotFound, self._run, api)
        self.assertEqual(['pause', 'resume'], self.guest.calls)
        self.assertEqual([], self._left())

    def test_copy_failure_resumed_and_cleaned(self):
        os.unlink(self.files.disk)
        self.assertRaises(snapshot.SnapshotFailed, self._run,
                          FakeImageAPI())
        self.assertEqual(['pause', 'resume'], self.guest.calls)
        self.assertEqual([], self._left())
        self.assertEqual(1, len(self.states))

    def test_no_domain(self):
        self.driver.host.find.return_value = None
        self.assertRaises(exception.InstanceNotRunning, self._run,
                          FakeImageAPI())
        self.assertEqual([], self.states)

    def test_container_snapshot_is_docker_raw(self):
        self.files.write_rootfs_ref('/cache/rootfs/abc.ext4')
        with open(self.files.upper, 'wb') as f:
            f.write(b'ext4')
        api = FakeImageAPI()
        seen = {}

        def fake_commit(self_, context, instance, files, copy, work, out):
            with open(copy, 'rb') as f:
                seen['copy'] = f.read()
            with open(out, 'wb') as f:
                f.write(b'archive')
            return 'committed'
        with mock.patch.object(snapshot.Snapshotter, '_commit',
                               fake_commit):
            self._run(api)
        self.assertEqual(b'ext4', seen['copy'])
        meta = api.updates[0][1]
        self.assertEqual(('raw', 'docker'), (meta['disk_format'],
                                             meta['container_format']))
        self.assertEqual(b'archive', api.updates[0][2])
        self.assertEqual([], self._left())

    def test_commit_failure_is_a_snapshot_failure(self):
        self.files.write_rootfs_ref('/cache/rootfs/abc.ext4')
        with open(self.files.upper, 'wb') as f:
            f.write(b'not ext4')
        err = self.assertRaises(snapshot.SnapshotFailed, self._run,
                                FakeImageAPI())
        self.assertIn('e2fsck', str(err))
        self.assertEqual(['pause', 'resume'], self.guest.calls)
        self.assertEqual([], self._left())
