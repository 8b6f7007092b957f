"""The libvirt connection: events, domains as Guests, host facts.

With :mod:`nova_clear.libvirt_guest` (one domain's operations) the only
module that calls libvirt.

Thread-safe: libvirt-python connections may be shared between threads; the
connection is (re)opened under a lock, and libvirt's event loop runs in its
own daemon thread.  Events are handed to a second thread so a slow consumer
(Nova's compute manager) never stalls libvirt's loop.
"""

import os
import queue
import threading
import time

from oslo_log import log as logging

import libvirt
from nova import exception
import nova.privsep.path
from nova.virt import event as virtevent

from nova_clear import domain as domain_xml
from nova_clear import exception as clear_exc
from nova_clear import libvirt_guest

LOG = logging.getLogger(__name__)

# libvirt lifecycle event -> Nova lifecycle transition (None: ignored)
LIFECYCLE = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED: virtevent.EVENT_LIFECYCLE_STOPPED,
    libvirt.VIR_DOMAIN_EVENT_STARTED: virtevent.EVENT_LIFECYCLE_STARTED,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: virtevent.EVENT_LIFECYCLE_PAUSED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: virtevent.EVENT_LIFECYCLE_RESUMED,
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED:
        virtevent.EVENT_LIFECYCLE_SUSPENDED,
}


def lifecycle_transition(event, detail):
    """Map a libvirt lifecycle event to Nova's, or None to drop it."""
    if (event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED and
            detail == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED):
        return None
    if (event == libvirt.VIR_DOMAIN_EVENT_STOPPED and
            detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED):
        # the source's QEMU after a live migration: the instance runs on
        # at the destination (nova_clear.live_migration)
        return None
    if (event == libvirt.VIR_DOMAIN_EVENT_STOPPED and
            detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED):
        return virtevent.EVENT_LIFECYCLE_SUSPENDED
    return LIFECYCLE.get(event)


_event_impl_lock = threading.Lock()
_event_impl_started = False


def _quiet_libvirt_errors():
    # libvirt prints every error to stderr unless a handler is registered;
    # errors reach us as exceptions anyway.
    libvirt.registerErrorHandler(lambda ctx, err: None, None)


_quiet_libvirt_errors()


def _start_event_loop():
    """libvirt's default event loop, once per process, in a thread."""
    global _event_impl_started
    with _event_impl_lock:
        if _event_impl_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name='libvirt-event-loop',
                         daemon=True).start()
        _event_impl_started = True


class Host:
    """libvirt connection and the operations the driver needs."""

    def __init__(self, uri, lifecycle_callback=None, owner=None):
        self.uri = uri
        # Events of domains another nova-compute (owner) made on a shared
        # libvirtd are not forwarded.
        self.owner = owner
        self._conn = None
        self._conn_lock = threading.Lock()
        self._lifecycle_callback = lifecycle_callback
        self._events = queue.Queue()
        self._dispatcher = None

    # -- connection -------------------------------------------------------
    def _open(self):
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            raise clear_exc.LibvirtUnavailable(uri=self.uri,
                                               reason=e.get_error_message())
        if self._lifecycle_callback is not None:
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                self._on_lifecycle, None)
            try:
                conn.registerCloseCallback(self._on_close, None)
            except libvirt.libvirtError:
                pass
        return conn

    def initialize(self):
        if self._lifecycle_callback is not None:
            _start_event_loop()
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch_events,
                    name='nova-clear-events', daemon=True)
                self._dispatcher.start()
        self.get_connection()

    def get_connection(self):
        with self._conn_lock:
            conn = self._conn
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                LOG.warning('Connection to libvirt at %s lost; reconnecting',
                            self.uri)
                self._conn = None
            self._conn = self._open()
            return self._conn

    def _on_close(self, conn, reason, opaque):
        LOG.warning('libvirt closed the connection (reason %s)', reason)
        with self._conn_lock:
            if self._conn is conn:
                self._conn = None

    # -- events -----------------------------------------------------------
    def _on_lifecycle(self, conn, dom, event, detail, opaque):
        transition = lifecycle_transition(event, detail)
        if transition is None:
            return
        # No libvirt calls here: this runs inside libvirt's event loop.
        self._events.put((dom, virtevent.LifecycleEvent(dom.UUIDString(),
                                                        transition)))

    def _foreign(self, dom):
        """True if ``dom`` is known to be another host's or not ours."""
        if self.owner is None:
            return False
        try:
            meta = libvirt_guest.Guest(dom).clear_metadata()
        except (exception.InstanceNotFound, libvirt.libvirtError):
            return False  # gone already (deleted): let Nova decide
        return meta is None or \
            domain_xml.host_of_metadata(meta) != self.owner

    def _dispatch_events(self):
        while True:
            dom, evt = self._events.get()
            try:
                if self._foreign(dom):
                    continue
                self._lifecycle_callback(evt)
            except Exception:
                LOG.exception('Dispatching %s failed', evt)

    # -- guests -----------------------------------------------------------
    def _call(self, what, func, *args):
        try:
            return func(*args)
        except libvirt.libvirtError as e:
            code = e.get_error_code()
            if code in (libvirt.VIR_ERR_SYSTEM_ERROR,
                        libvirt.VIR_ERR_NO_CONNECT,
                        libvirt.VIR_ERR_INTERNAL_ERROR) and \
                    not self._alive():
                raise clear_exc.LibvirtUnavailable(
                    uri=self.uri, reason=e.get_error_message())
            raise

    def _alive(self):
        try:
            return self._conn is not None and self._conn.isAlive()
        except libvirt.libvirtError:
            return False

    def lookup(self, uuid):
        """The :class:`Guest` of instance ``uuid``; InstanceNotFound if
        libvirt has no such domain."""
        conn = self.get_connection()
        try:
            return libvirt_guest.Guest(conn.lookupByUUIDString(uuid))
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise exception.InstanceNotFound(instance_id=uuid)
            raise

    def find(self, uuid):
        """The :class:`Guest` of instance ``uuid``, or None."""
        try:
            return self.lookup(uuid)
        except exception.InstanceNotFound:
            return None

    def list_guests(self, host=None):
        """Every domain (running or defined) that is a Clear Container of
        ``host`` (all hosts' when None), as Guests; several nova-compute
        services may share one libvirtd."""
        conn = self.get_connection()
        ours = []
        for dom in conn.listAllDomains(0):
            guest = libvirt_guest.Guest(dom)
            try:
                meta = guest.clear_metadata()
            except exception.InstanceNotFound:
                continue  # deleted meanwhile
            if meta is None:
                continue  # not a Clear Container
            if host is not None and \
                    domain_xml.host_of_metadata(meta) != host:
                continue
            ours.append(guest)
        return ours

    def define(self, xml):
        """Define (or redefine) a persistent domain: its :class:`Guest`,
        ready to launch."""
        conn = self.get_connection()
        return libvirt_guest.Guest(self._call('define', conn.defineXML, xml))

    # -- host facts -------------------------------------------------------
    def node_info(self):
        """(arch, memory MiB, cpus, ...) as virNodeGetInfo returns it."""
        return self._call('getInfo', self.get_connection().getInfo)

    def hostname(self):
        return self._call('getHostname', self.get_connection().getHostname)

    def capabilities(self):
        """The host's capabilities XML (virConnectGetCapabilities)."""
        return self._call('getCapabilities',
                          self.get_connection().getCapabilities)

    def expand_cpu(self, cpu_xml):
        """``cpu_xml`` (a <cpu> element) with every feature listed, its
        model's included (virConnectBaselineCPU with EXPAND_FEATURES, as
        nova's libvirt driver resolves CPU models); None if libvirt cannot
        (VIR_ERR_NO_SUPPORT)."""
        try:
            return self._call(
                'baselineCPU', self.get_connection().baselineCPU, [cpu_xml],
                libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            LOG.debug('libvirt cannot expand CPU models: %s', e)
            return None

    def version(self):
        conn = self.get_connection()
        return conn.getLibVersion(), conn.getVersion()

    def probe_boot(self, virt_type, assets, workdir, timeout):
        """Boot the agent once in probe mode; True if it reports in time.

        Used by virt_type=auto to find out whether KVM really runs the
        guest kernel (kvm-pvm and some nested setups expose /dev/kvm but
        hang stock kernels).  The probe domain is transient and is always
        destroyed; its console log is removed.
        """
        name = 'nova-clear-probe-%d' % os.getpid()
        log = os.path.join(workdir, '%s.log' % name)
        xml = domain_xml.probe_xml(name, virt_type, assets.kernel,
                                   assets.initrd, log, assets.acpi)
        conn = self.get_connection()
        stale = self.find_by_name(name)
        if stale is not None:
            stale.destroy()
        dom = None
        try:
            dom = conn.createXML(xml, 0)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if _file_contains(log, b'nova-clear: probe ok'):
                    return True
                try:
                    if not dom.isActive():
                        return _file_contains(log, b'nova-clear: probe ok')
                except libvirt.libvirtError:
                    return _file_contains(log, b'nova-clear: probe ok')
                time.sleep(0.2)
            return False
        except libvirt.libvirtError as e:
            LOG.warning('Probe boot under %s failed to start: %s',
                        virt_type, e)
            return False
        finally:
            if dom is not None:
                try:
                    libvirt_guest.Guest(dom).destroy()
                except (clear_exc.GuestOperationFailed,
                        libvirt.libvirtError):
                    pass
            try:
                os.unlink(log)
            except OSError:
                pass

    def find_by_name(self, name):
        """The :class:`Guest` of the domain called ``name``, or None."""
        try:
            dom = self.get_connection().lookupByName(name)
        except libvirt.libvirtError:
            return None
        return libvirt_guest.Guest(dom)


PROBE_LOG_MAX_BYTES = 1024 * 1024


def _file_contains(path, needle):
    try:
        with open(path, 'rb') as f:
            return needle in f.read()
    except PermissionError:
        # virtlogd writes it (root, 0600) and nova-compute runs
        # unprivileged: read it through nova's privsep daemon, as the
        # console log is read
        try:
            data, _remaining = nova.privsep.path.last_bytes(
                path, PROBE_LOG_MAX_BYTES)
        except OSError:
            return False
        return needle in data
    except OSError:
        return False
