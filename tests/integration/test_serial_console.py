"""The interactive serial console through the real Nova: ``openstack console
url show --serial`` hands out a websocket of nova-serialproxy (the
all-in-one runs it on :6083, tools/aio/services/serial_proxy.py), which
relays it to the TCP port QEMU listens on for the instance's ttyS0
(nova_clear/serial_console.py); ``openstack console log show`` keeps
showing the same console from its log file."""

import json
import random
import time

import websocket

from tests.integration import base

# The container's workload is a shell on its console, as
# "docker run -it IMAGE sh" (clear_cmd, run as root).
SHELL_CMD = 'echo shell-ready; exec /bin/sh'
PROXY_PORT = 6083


class TestSerialConsole(base.IntegrationTestCase):

    def serial_url(self, server):
        out = json.loads(self.cli('console', 'url', 'show', '--serial',
                                  '-f', 'json', server.id))
        self.assertEqual('serial', out['type'])
        return out['url']

    def open(self, url):
        """The websocket as nova's own clients open it (websockify's
        'binary' subprotocol)."""
        try:
            ws = websocket.create_connection(url, subprotocols=['binary'],
                                             timeout=30)
        except ConnectionRefusedError:
            self.fail('nothing listens on %s: is nova-serialproxy running '
                      '(tools/allinone up starts it)?' % url)
        self.addCleanup(ws.close)
        return ws

    def read_until(self, ws, needle, timeout=60):
        received = b''
        deadline = time.monotonic() + timeout
        while needle.encode() not in received:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail('%r not read from the serial console in %ds; got '
                          '%r' % (needle, timeout, received[-2000:]))
            ws.settimeout(min(left, 2))
            try:
                data = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if not data:
                self.fail('the serial console closed; got %r'
                          % received[-2000:])
            received += data if isinstance(data, bytes) else data.encode()
        return received.decode('utf-8', 'replace')

    def test_type_into_a_container_shell_through_the_serial_proxy(self):
        image = self.container_image(SHELL_CMD, tag='serialimg')
        server = self.create('serial', image=image.id)
        self.wait_console(server, 'shell-ready')

        url = self.serial_url(server)
        self.assertTrue(url.startswith('ws://127.0.0.1:%d/' % PROXY_PORT),
                        url)
        self.assertIn('token=', url)
        ws = self.open(url)
        n = random.randrange(10000, 99999)
        # the typed line differs from the answer: only the shell makes it
        ws.send_binary(('echo hello-$((%d + 1))\r' % n).encode())
        answer = 'hello-%d' % (n + 1)
        self.read_until(ws, answer)

        # the console log has the boot and the answer
        log = self.wait_console(server, answer)
        self.assertIn('shell-ready', log)
        self.assertIn(answer, self.cli('console', 'log', 'show', server.id))

        # another console later (a new URL, a new proxy connection)
        ws.close()
        ws = self.open(self.serial_url(server))
        ws.send_binary(('echo hello-$((%d + 2))\r' % n).encode())
        self.read_until(ws, 'hello-%d' % (n + 2))
