"""The interactive serial console (nova's ``[serial_console]`` options).

With ``[serial_console] enabled = true`` the guest's one serial port
(ttyS0, its console) is a TCP server QEMU runs on
``proxyclient_address``: nova-serialproxy connects to it when a user opens
the websocket of ``openstack console url show --serial``.  Everything the
guest writes to it still goes to ``console.log`` too (libvirt's ``<log>``
of the chardev, written by virtlogd, appended across restarts), so
``openstack console log show`` keeps working (``domain._serial``).

Ports come from ``port_range`` on ``proxyclient_address``.  Each
definition of an instance's domain (spawn, hard reboot, power on, rescue,
rebuild) claims one (:meth:`SerialPorts.claim`): the port the instance had
when it is free again (its QEMU stopped), else the next port that no
instance of this service holds and nothing on the host listens on.  They
are released when the domain is removed (destroy, a failed spawn).  A
started service adopts the ports of the domains it finds, so a restarted
nova-compute hands none of them out twice.

Thread-safe: one lock around the table (Nova 34 calls the driver from
native threads).
"""

import socket
import threading
from xml.etree import ElementTree as ET

from oslo_log import log as logging

import nova.conf
from nova.console import type as ctype
from nova import exception

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF


def enabled():
    return CONF.serial_console.enabled


def port_range(text=None):
    """(start, stop) of ``[serial_console] port_range`` ("start:stop",
    stop excluded, as nova's libvirt driver reads it).  A malformed, empty
    or out-of-range value is logged and nova's default range used instead,
    as nova's own serial helper does: the console is not worth failing a
    boot for."""
    text = CONF.serial_console.port_range if text is None else text
    try:
        start, stop = (int(p) for p in text.split(':'))
        if 0 < start < stop <= 65536:
            return start, stop
    except (AttributeError, ValueError):
        pass
    default = nova.conf.serial_console.DEFAULT_PORT_RANGE
    LOG.warning('[serial_console] port_range %r is not START:STOP with '
                'START < STOP within 1-65535: using %s', text, default)
    start, stop = (int(p) for p in default.split(':'))
    return start, stop


def is_free(host, port):
    """Nothing on this host listens on (host, port): binding it works as
    QEMU binds it (SO_REUSEADDR: connections of an earlier QEMU in
    TIME_WAIT do not keep it)."""
    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def tcp_ports_of(xml_text):
    """[(host, port)] of a domain XML's serial ports QEMU listens on
    (``<serial type='tcp'><source mode='bind' .../>``), in order."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return []
    ports = []
    for serial in root.findall('devices/serial'):
        source = serial.find('source')
        if serial.get('type') != 'tcp' or source is None or \
                source.get('mode') != 'bind':
            continue
        try:
            ports.append((source.get('host'), int(source.get('service'))))
        except (TypeError, ValueError):
            continue
    return ports


class SerialPorts:
    """The TCP ports this service's domains' serial consoles use."""

    def __init__(self, free=is_free):
        self._free = free
        self._lock = threading.Lock()
        self._ports = {}            # instance uuid -> [(host, port)]

    def claim(self, uuid):
        """(host, port) for a new definition of ``uuid``'s domain, or None
        when the serial console is disabled.
        SocketPortRangeExhaustedException when no port is left."""
        if not enabled():
            return None
        host = CONF.serial_console.proxyclient_address
        start, stop = port_range()
        with self._lock:
            mine = self._ports.setdefault(uuid, [])
            for h, p in mine:
                if h == host and start <= p < stop and self._free(h, p):
                    return h, p
            held = {hp for ports in self._ports.values() for hp in ports}
            for port in range(start, stop):
                if (host, port) not in held and self._free(host, port):
                    mine.append((host, port))
                    return host, port
        raise exception.SocketPortRangeExhaustedException(host=host)

    def adopt(self, uuid, ports):
        """Record ``ports`` as held by ``uuid`` (its domain exists)."""
        with self._lock:
            mine = self._ports.setdefault(uuid, [])
            mine.extend(hp for hp in ports if hp not in mine)

    def adopt_guests(self, guests):
        """Adopt the ports of existing domains (a service start)."""
        for guest in guests:
            ports = guest.serial_tcp_ports(inactive=True)
            ports += guest.serial_tcp_ports()
            if ports:
                self.adopt(guest.uuid, ports)

    def release(self, uuid):
        """The domain of ``uuid`` is gone: its ports are free again."""
        with self._lock:
            ports = self._ports.pop(uuid, None)
        if ports:
            LOG.debug('Released serial console ports %s of %s', ports, uuid)

    def held(self, uuid):
        with self._lock:
            return list(self._ports.get(uuid, ()))


def console(guest):
    """The ConsoleSerial nova-serialproxy connects to for ``guest`` (a
    Guest or None): the host and port its running domain listens on."""
    if not enabled():
        raise exception.ConsoleTypeUnavailable(console_type='serial')
    if guest is None or not guest.is_active():
        raise exception.ConsoleNotAvailable()
    for host, port in guest.serial_tcp_ports():
        return ctype.ConsoleSerial(host=host, port=port)
    # Defined while the serial console was disabled: a hard reboot (or
    # power off and on) redefines it with a TCP port.
    raise exception.ConsoleTypeUnavailable(console_type='serial')
