"""nova-compute runs unprivileged, as devstack and distributions run it.

The all-in-one starts nova-compute as the system user ``nova`` (groups
libvirt and kvm); its privsep daemons (nova's, nova-clear's) start as
root through ``sudo privsep-helper`` under a sudoers rule that allows only
them.  A container image is unpacked by nova-clear's privsep daemon into
the cache nova-compute owns and boots to ACTIVE with its workload on the
console, all while nova-compute holds no privilege.
"""

import grp
import hashlib
import io
import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import tempfile
import uuid

from tests.functional import images
from tests.integration import base

WORKLOAD = ('echo "unprivileged nova-compute, container says: $GREETING as '
            'uid $(id -u)"; cat /data/greeting; exec sleep 1000000')
SAYS = 'unprivileged nova-compute, container says: hello as uid 1000'
GREETING = 'greeting file from the image'


def proc_status(pid):
    fields = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            key, _sep, value = line.partition(':')
            fields[key] = value.split()
    return fields


def proc_cmdline(pid):
    with open('/proc/%d/cmdline' % pid, 'rb') as f:
        return f.read().decode('utf-8', 'replace').split('\0')


def unique_docker_archive(source, dest):
    """``source`` (a docker-archive) with a config of its own: a new
    digest, so nova-clear's privsep daemon builds its root filesystem now
    (not one cached by an earlier test)."""
    with tarfile.open(source) as src, tarfile.open(dest, 'w') as out:
        members = src.getmembers()
        manifest = json.load(src.extractfile('manifest.json'))
        old = manifest[0]['Config']
        config = json.load(src.extractfile(old))
        labels = config.setdefault('config', {}).get('Labels') or {}
        labels['org.opendev.nova-clear.test'] = uuid.uuid4().hex
        config['config']['Labels'] = labels
        data = json.dumps(config).encode()
        name = '%s.json' % hashlib.sha256(data).hexdigest()
        manifest[0]['Config'] = name
        extra = {name: data,
                 'manifest.json': json.dumps(manifest).encode()}
        for m in members:
            if m.name in (old, 'manifest.json'):
                continue
            out.addfile(m, src.extractfile(m) if m.isfile() else None)
        for mname, mdata in extra.items():
            info = tarfile.TarInfo(mname)
            info.size = len(mdata)
            info.mode = 0o644
            out.addfile(info, io.BytesIO(mdata))
    return dest


class TestUnprivilegedCompute(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        if not self.state.get('compute_user'):
            self.skipTest('this all-in-one predates the unprivileged '
                          'nova-compute: run tools/allinone up')
        self.user = pwd.getpwnam(self.state['compute_user'])

    def compute_pid(self):
        path = os.path.join(self.state['home'], 'run', 'nova-compute.pid')
        with open(path) as f:
            return int(f.read().split()[0])

    def assert_unprivileged(self, pid):
        status = proc_status(pid)
        # real, effective, saved and file-system ids: all the user's
        self.assertEqual([str(self.user.pw_uid)] * 4, status['Uid'],
                         'nova-compute (pid %d) uids' % pid)
        self.assertNotEqual(0, self.user.pw_uid)
        self.assertEqual([str(self.user.pw_gid)] * 4, status['Gid'])
        self.assertEqual(0, int(status['CapEff'][0], 16),
                         'nova-compute has effective capabilities')
        self.assertEqual(0, int(status['CapPrm'][0], 16))
        groups = {int(g) for g in status['Groups']}
        for name in ('libvirt', 'kvm'):
            self.assertIn(grp.getgrnam(name).gr_gid, groups,
                          'nova-compute is not in group %s' % name)
        self.assertIn('nova-compute', ' '.join(proc_cmdline(pid)))

    def assert_owned(self, path):
        st = os.stat(path)
        self.assertEqual(self.user.pw_uid, st.st_uid,
                         '%s is not owned by %s' % (path, self.user.pw_name))

    def privsep_daemons(self, context):
        """uid of each running privsep daemon of ``context`` started with
        nova-compute's configuration file."""
        uids = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                argv = proc_cmdline(int(entry))
                uid = os.stat('/proc/%s' % entry).st_uid
            except OSError:
                continue
            if any(a.endswith('privsep-helper') for a in argv[:2]) and \
                    context in argv and self.state['compute_conf'] in argv \
                    and 'sudo' not in os.path.basename(argv[0]):
                uids.append(uid)
        return uids

    def remove_from_cache(self, image_id):
        cache = os.path.join(self.state['instances_path'], '_clear_base')
        rootfs = os.path.join(cache, 'rootfs')
        paths = [os.path.join(cache, image_id),
                 os.path.join(cache, image_id + '.json')]
        ref = os.path.join(rootfs, 'by-image', image_id)
        try:
            with open(ref) as f:
                digest = f.read().strip()
        except OSError:
            digest = None
        if digest:
            paths += [os.path.join(rootfs, digest + '.ext4'),
                      os.path.join(rootfs, digest + '.json')]
        for path in paths + [ref]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def test_nova_compute_runs_as_the_unprivileged_user(self):
        self.assert_unprivileged(self.compute_pid())
        for path in (self.state['instances_path'],
                     self.state['compute_state'],
                     self.state['compute_locks']):
            self.assert_owned(path)
        cache = os.path.join(self.state['instances_path'], '_clear_base')
        if os.path.isdir(cache):
            self.assert_owned(cache)
        # its configuration: readable by it, writable only by root (the
        # privsep daemons read it as root)
        st = os.stat(self.state['compute_conf'])
        self.assertEqual((0, self.user.pw_gid, 0o640),
                         (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
        # the sudoers rule: root's, read-only, naming the venv's helper
        st = os.stat(self.state['sudoers'])
        self.assertEqual((0, 0o440), (st.st_uid, stat.S_IMODE(st.st_mode)))
        with open(self.state['sudoers']) as f:
            rule = f.read()
        self.assertIn(os.path.join(self.state['venv'], 'bin',
                                   'privsep-helper'), rule)
        self.assertNotIn('NOPASSWD: ALL', rule)

    def sudo_allows(self, *cmd):
        """Whether sudo lets the compute user run ``cmd`` as root
        (``sudo -l``: checked, not run)."""
        proc = subprocess.run(
            ['setpriv', '--reuid', str(self.user.pw_uid), '--regid',
             str(self.user.pw_gid), '--init-groups', 'sudo', '-n', '-l'] +
            list(cmd), capture_output=True, text=True, cwd='/', timeout=60)
        return proc.returncode == 0

    def test_sudo_allows_only_its_privsep_daemons(self):
        helper = os.path.join(self.state['venv'], 'bin', 'privsep-helper')
        conf = self.state['compute_conf']
        sock = ['--privsep_sock_path', '/tmp/tmpab_12cd/privsep.sock']

        def daemon(context, conf=conf, sock=sock, extra=()):
            return [helper, '--config-file', conf,
                    '--privsep_context', context] + sock + list(extra)
        for context in ('nova.privsep.sys_admin_pctxt',
                        'nova_clear.privsep.clear_admin_pctxt',
                        'vif_plug_ovs.privsep.vif_plug'):
            self.assertTrue(self.sudo_allows(*daemon(context)), context)
        refused = {
            'another context': daemon('neutron.privileged.default'),
            'another config file': daemon(
                'nova_clear.privsep.clear_admin_pctxt', conf='/tmp/x.conf'),
            'an extra argument': daemon(
                'nova_clear.privsep.clear_admin_pctxt',
                extra=['--config-file', '/tmp/x.conf']),
            'a socket elsewhere': daemon(
                'nova_clear.privsep.clear_admin_pctxt',
                sock=['--privsep_sock_path', '/etc/privsep.sock']),
            'a shell': ['/bin/sh', '-c', 'id'],
        }
        for what, cmd in refused.items():
            self.assertFalse(self.sudo_allows(*cmd),
                             'sudo allows %s: %s' % (what, cmd))

    def test_container_image_boots_with_unprivileged_compute(self):
        """openstack server create of a new container image -> ACTIVE,
        its workload on the console; nova-clear's privsep daemon (root,
        by sudo) unpacked it into the cache nova-compute owns."""
        pid = self.compute_pid()
        self.assert_unprivileged(pid)
        tmp = tempfile.mkdtemp(prefix='it-unpriv-')
        self.addCleanup(shutil.rmtree, tmp, True)
        archive = unique_docker_archive(images.container_image('docker'),
                                        os.path.join(tmp, 'image.tar'))
        image = self.conn.image.create_image(
            name=self.name('unpriv-img'), filename=archive,
            disk_format='raw', container_format='docker', wait=True,
            validate_checksum=False, clear_cmd=json.dumps([WORKLOAD]))
        self.addCleanup(self.conn.image.delete_image, image,
                        ignore_missing=True)
        # after the server is gone (cleanups run last-in first-out): its
        # image's one-off root filesystem and archive leave the cache
        self.addCleanup(self.remove_from_cache, image.id)
        name = self.name('unpriv')
        self.addCleanup(self.delete_by_name, name)
        out = json.loads(self.cli(
            'server', 'create', '--wait', '--nic', 'none', '--flavor',
            'clear.tiny', '--image', image.id, '-f', 'json', name))
        self.assertEqual('ACTIVE', out['status'])
        server = self.conn.compute.get_server(out['id'])
        # the console log (virtlogd's, root 0600) read through nova's
        # privsep daemon
        console = self.wait_console(server, GREETING)
        self.assertIn(SAYS, console)
        self.assertIn(SAYS, self.cli('console', 'log', 'show', out['id']))
        # the instance's files and the image's root filesystem are the
        # compute user's; the root filesystem read-only
        # (libvirt gives a running guest's disks to its QEMU user)
        qemu = pwd.getpwnam('libvirt-qemu').pw_uid
        inst = self.instance_dir(out['id'])
        self.assert_owned(inst)
        self.assertIn(os.stat(os.path.join(inst, 'upper')).st_uid,
                      (self.user.pw_uid, qemu))
        with open(os.path.join(inst, 'rootfs')) as f:
            rootfs = f.read().strip()
        st = os.stat(rootfs)
        self.assertEqual(0o444, stat.S_IMODE(st.st_mode))
        self.assertIn(st.st_uid, (self.user.pw_uid, qemu))
        self.assert_owned(os.path.dirname(rootfs))
        # the same unprivileged process did it all, and the root work ran
        # in privsep daemons started by sudo as root
        self.assertEqual(pid, self.compute_pid())
        self.assert_unprivileged(pid)
        for context in ('nova_clear.privsep.clear_admin_pctxt',
                        'nova.privsep.sys_admin_pctxt'):
            uids = self.privsep_daemons(context)
            self.assertTrue(uids, 'no privsep daemon of %s' % context)
            self.assertEqual({0}, set(uids), context)
