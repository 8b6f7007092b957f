"""tempest's images (nova_clear.sample_ssh) through Nova: the host reaches
its guests on the provider network (``clearhost0``) and root logs in with
the server's key pair -- from the config drive for the disk image, from
the agent for the container image -- and with nothing else."""

import socket
import time

import paramiko

from tests.integration import test_networking

SSH_TIMEOUT = 180


class TestSshLogin(test_networking.NetworkingTestCase):

    def setUp(self):
        super().setUp()
        for name in ('clear-ssh', 'clear-ssh-container'):
            if name not in self.images:
                self.skipTest('the all-in-one has no image %s: run '
                              'tools/allinone up' % name)
        # what tempest makes ([validation] ssh_key_type = ecdsa)
        self.key = paramiko.ECDSAKey.generate()
        self.keypair = self.conn.compute.create_keypair(
            name=self.name('key'),
            public_key='%s %s' % (self.key.get_name(), self.key.get_base64()))
        self.addCleanup(self.conn.compute.delete_keypair, self.keypair,
                        ignore_missing=True)

    def boot_with_key(self, tag, image, key_name):
        server = self.conn.compute.create_server(
            name=self.name(tag), image_id=image, key_name=key_name,
            flavor_id=self.flavor().id,
            networks=[{'uuid': self.net['network_id']}])
        self.addCleanup(self.delete, server.id)
        return self.wait_status(server, 'ACTIVE')

    def ssh(self, address, key, deadline=SSH_TIMEOUT):
        """A root session on ``address`` with ``key``; the last error when
        it did not open before ``deadline``."""
        end = time.monotonic() + deadline
        while True:
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            try:
                client.connect(address, username='root', pkey=key,
                               timeout=10, allow_agent=False,
                               look_for_keys=False)
                self.addCleanup(client.close)
                return client
            except paramiko.AuthenticationException:
                client.close()
                raise
            except (OSError, socket.timeout, paramiko.SSHException) as e:
                client.close()
                if time.monotonic() > end:
                    self.fail('no SSH on %s after %ds: %s' % (
                        address, deadline, e))
                time.sleep(1)

    def run_cmd(self, client, cmd):
        _in, out, err = client.exec_command(cmd)
        status = out.channel.recv_exit_status()
        self.assertEqual(0, status, err.read().decode())
        return out.read().decode()

    def test_disk_image_key_from_the_config_drive(self):
        server = self.boot_with_key('ssh', self.images['clear-ssh'],
                                    self.keypair.name)
        self.wait_console(server, 'ssh-init: up on')
        self.assertIn('ssh-init: 1 key(s) from the config drive',
                      self.console(server))
        client = self.ssh(self.address(server), self.key)
        self.assertEqual(server.hostname, self.run_cmd(client,
                                                       'hostname').strip())
        # what tempest runs: util-linux's blkid and lsblk, sudo, the drive
        dev = self.run_cmd(client, 'blkid -L config-2 -o device').strip()
        self.run_cmd(client, 'sudo mount %s /mnt' % dev)
        self.assertIn(self.keypair.name, self.run_cmd(
            client, 'sudo cat /mnt/openstack/latest/meta_data.json'))
        self.run_cmd(client, 'sudo umount /mnt')
        self.assertIn(' disk ', self.run_cmd(client, 'lsblk -lb --nodeps'))

    def test_container_image_key_from_the_agent(self):
        server = self.boot_with_key('sshc', self.images['clear-ssh-container'],
                                    self.keypair.name)
        self.wait_console(server, 'ssh-container: dropbear on port 22')
        client = self.ssh(self.address(server), self.key)
        self.assertEqual('0', self.run_cmd(client, 'id -u').strip())

    def test_another_key_does_not_log_in(self):
        server = self.boot_with_key('sshx', self.images['clear-ssh'],
                                    self.keypair.name)
        self.wait_console(server, 'ssh-init: up on')
        other = paramiko.ECDSAKey.generate()
        self.assertRaises(paramiko.AuthenticationException, self.ssh,
                          self.address(server), other)
        # and the right one does
        self.ssh(self.address(server), self.key)
