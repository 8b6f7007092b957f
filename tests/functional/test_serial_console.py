"""The interactive serial console on the real libvirtd + QEMU: a container
whose workload is a shell, typed into over the TCP port QEMU listens on (as
nova-serialproxy connects to it), while the console log keeps the output."""

import random
import socket
import time

from nova.compute import power_state
from nova import exception

from nova_clear import serial_console
from tests.functional import base

SHELL_CMD = 'echo shell-ready; exec /bin/sh'


class SerialConnection:
    """A raw TCP connection to a guest's serial port."""

    def __init__(self, test, host, port, timeout=60):
        self.test = test
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.received = b''

    def close(self):
        self.sock.close()

    def send(self, text):
        self.sock.sendall(text.encode())

    def read_until(self, needle, timeout=60):
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.received:
            left = deadline - time.monotonic()
            if left <= 0:
                self.test.fail('%r not read from the serial console in %ds; '
                               'got %r' % (needle, timeout,
                                           self.received[-2000:]))
            self.sock.settimeout(min(left, 1))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                self.test.fail('the serial console closed; got %r'
                               % self.received[-2000:])
            self.received += data
        return self.received.decode('utf-8', 'replace')

    def run(self, command_fmt):
        """Type ``command_fmt % n`` (a command whose output differs from
        the typed line, e.g. ``echo x-$((n + 1))``) with return, read the
        answer; returns it."""
        n = random.randrange(10000, 99999)
        self.send(command_fmt % n + '\r')
        answer = 'hello-%d' % (n + 1)
        self.read_until(answer)
        return answer


class TestSerialConsole(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        # a range of our own: other tests and the all-in-one's nova-compute
        # share this host
        start = random.randrange(30000, 60000, 50)
        self.conf.config(group='serial_console', enabled=True,
                         port_range='%d:%d' % (start, start + 50),
                         proxyclient_address='127.0.0.1')

    def shell_container(self, drv):
        image = self.container_image(SHELL_CMD, user='0')
        inst = self.spawn(drv, image)
        self.wait_console(drv, inst, 'shell-ready')
        return inst

    def connect(self, drv, inst):
        c = drv.get_serial_console(self.context, inst)
        conn = SerialConnection(self, c.host, c.port)
        self.addCleanup(conn.close)
        return c, conn

    def log(self, drv, inst):
        return self.console(drv, inst).replace('\r', '')

    def test_type_into_the_shell_and_keep_the_log(self):
        drv = self.make_driver()
        inst = self.shell_container(drv)
        c, conn = self.connect(drv, inst)
        self.assertEqual('127.0.0.1', c.host)
        answer = conn.run('echo hello-$((%d + 1))')
        # the console log has the boot and what the shell answered
        log = self.wait_console(drv, inst, answer)
        self.assertIn('nova-clear: ready %s' % inst.uuid, log)
        self.assertIn('shell-ready', log)
        # the console is the shell's controlling terminal: ^C interrupts
        # the command in the foreground
        conn.send('sleep 600; echo not-interrupted\r')
        time.sleep(2)
        conn.send('\x03')
        conn.run('echo hello-$((%d + 1))')
        self.assertIn('^C', conn.received.decode())
        self.assertNotIn('\nnot-interrupted', conn.received.decode())

    def test_stop_start_keeps_a_console_and_destroy_releases(self):
        drv = self.make_driver()
        inst = self.shell_container(drv)
        _c, conn = self.connect(drv, inst)
        conn.run('echo hello-$((%d + 1))')
        conn.close()

        drv.power_off(inst)
        self.assertEqual(power_state.SHUTDOWN, drv.get_info(inst).state)
        self.assertRaises(exception.ConsoleNotAvailable,
                          drv.get_serial_console, self.context, inst)
        drv.power_on(self.context, inst, None)
        self.wait_console(drv, inst, 'shell-ready', count=2)
        c, conn = self.connect(drv, inst)
        conn.run('echo hello-$((%d + 1))')
        # one boot's log follows the other's
        self.assertEqual(2, self.log(drv, inst).count(
            'nova-clear: ready %s' % inst.uuid))

        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)
        self.assertEqual([], drv.serial_ports.held(inst.uuid))
        self.assertTrue(serial_console.is_free(c.host, c.port))
