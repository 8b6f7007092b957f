"""One libvirt domain, a Clear Container, as the driver uses it.

:class:`Guest` wraps one virDomain in small typed methods, as nova's libvirt
driver does in ``nova/virt/libvirt/guest.py``; :class:`nova_clear.host.Host`
hands them out (``lookup``, ``find``, ``define``, ``list_guests``).  With
``host.py`` this is the only module that calls libvirt.

Errors: what the driver expects of a domain that stopped or vanished is a
result, not an error (``active_info`` is None, ``destroy`` and ``undefine``
do nothing, ``wait_for_shutoff`` is True; ``get_power_state`` raises
``InstanceNotFound``).  The libvirt errors the driver handles become
:mod:`nova_clear.exception` errors: ``ClearContainerStartFailed`` from
``launch``, ``GuestOperationFailed`` from ``shutdown``, ``destroy`` and
``undefine``.  Other libvirt errors propagate unchanged.
"""

import collections
import json
import time
from xml.etree import ElementTree as ET

import libvirt
import libvirt_qemu
from nova.compute import power_state
from nova import exception

from nova_clear import domain as domain_xml
from nova_clear import exception as clear_exc
from nova_clear import serial_console

POWER_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: power_state.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: power_state.RUNNING,
    # A vCPU waiting for I/O is still running as far as Nova is concerned.
    libvirt.VIR_DOMAIN_BLOCKED: power_state.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: power_state.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: power_state.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: power_state.SUSPENDED,
}

# virDomainGetInfo of a running domain (memory in KiB, CPU time in ns).
ActiveInfo = collections.namedtuple(
    'ActiveInfo', 'state max_mem_kib mem_kib vcpus cpu_time_ns')

# QEMU's block_set_io_throttle / query-block names of libvirt's iotune.
QMP_THROTTLE = {'total_bytes_sec': 'bps', 'read_bytes_sec': 'bps_rd',
                'write_bytes_sec': 'bps_wr', 'total_iops_sec': 'iops',
                'read_iops_sec': 'iops_rd', 'write_iops_sec': 'iops_wr'}

# The domain is gone, or (for destroy) not running: nothing to do.
_GONE = (libvirt.VIR_ERR_NO_DOMAIN,)
_NOT_RUNNING = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)


def power_state_of(libvirt_state):
    return POWER_STATE.get(libvirt_state, power_state.NOSTATE)


def _code(error):
    return error.get_error_code()


class Guest:
    """One virDomain; cheap to make, holds no state of its own."""

    def __init__(self, domain):
        self._domain = domain

    def __repr__(self):
        return '<Guest %s %s>' % (self.name, self.uuid)

    @property
    def uuid(self):
        return self._domain.UUIDString()

    @property
    def name(self):
        return self._domain.name()

    def _failed(self, action, error):
        return clear_exc.GuestOperationFailed(
            action=action, name=self.name, reason=error.get_error_message())

    # -- facts --------------------------------------------------------------
    def is_active(self):
        return bool(self._domain.isActive())

    def get_power_state(self):
        """Nova's power state; SUSPENDED for a stopped domain with a managed
        save image (its memory on disk, see :meth:`managed_save`).
        InstanceNotFound if the domain is gone."""
        try:
            state, _reason = self._domain.state()
            if state == libvirt.VIR_DOMAIN_SHUTOFF and \
                    self._domain.hasManagedSaveImage(0):
                return power_state.SUSPENDED
        except libvirt.libvirtError as e:
            if _code(e) in _GONE:
                raise exception.InstanceNotFound(instance_id=self.uuid)
            raise
        return power_state_of(state)

    def active_info(self):
        """:class:`ActiveInfo` of a running domain; None if it stopped or
        vanished meanwhile (a listing races with deletes)."""
        try:
            if not self._domain.isActive():
                return None
            return ActiveInfo(*self._domain.info()[:5])
        except libvirt.libvirtError as e:
            if _code(e) in _NOT_RUNNING:
                return None
            raise

    def clear_metadata(self):
        """Our metadata element (XML) as libvirt returns it; None if the
        domain has none (it is not a Clear Container).  InstanceNotFound if
        the domain is gone."""
        try:
            return self._domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                         domain_xml.NS_URI)
        except libvirt.libvirtError as e:
            if _code(e) == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return None
            if _code(e) in _GONE:
                raise exception.InstanceNotFound(instance_id=self.uuid)
            raise

    def info(self):
        """:class:`ActiveInfo` of the domain in any state (memory in KiB,
        CPU time in ns); InstanceNotFound if it is gone."""
        try:
            return ActiveInfo(*self._domain.info()[:5])
        except libvirt.libvirtError as e:
            if _code(e) in _GONE:
                raise exception.InstanceNotFound(instance_id=self.uuid)
            raise

    def get_xml_desc(self, inactive=False):
        """The domain's XML: live, or as it boots next (``inactive``)."""
        return self._domain.XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0)

    def serial_tcp_ports(self, inactive=False):
        """[(host, port)] the domain's serial consoles listen on (live, or
        as defined with ``inactive``); [] if it has none or is gone."""
        try:
            xml = self.get_xml_desc(inactive=inactive)
        except libvirt.libvirtError as e:
            if _code(e) in _GONE:
                return []
            raise
        return serial_console.tcp_ports_of(xml)

    # -- statistics (diagnostics) ---------------------------------------------
    # Each is None when libvirt cannot give it (the domain stopped or went
    # meanwhile, no such device, not supported), as nova's libvirt driver
    # leaves out what libvirt refuses.
    def _stats(self, func, *args):
        try:
            return func(*args)
        except libvirt.libvirtError:
            return None

    def vcpu_times(self):
        """[(vCPU number, CPU time in ns)] of a running domain."""
        vcpus = self._stats(self._domain.vcpus)
        if vcpus is None:
            return None
        return [(v[0], v[2]) for v in vcpus[0]]

    def block_stats(self, dev):
        """(read requests, read bytes, write requests, write bytes,
        errors) of disk target ``dev`` (errors: -1 if unknown):
        virDomainBlockStats, or QEMU's query-blockstats where libvirt
        cannot (microvm, see :meth:`_qmp_block`)."""
        stats = self._stats(self._domain.blockStats, dev)
        if stats is not None:
            return stats
        block = self._qmp_block('query-blockstats', dev)
        if block is None:
            return None
        s = block.get('stats', {})
        return (s.get('rd_operations', 0), s.get('rd_bytes', 0),
                s.get('wr_operations', 0), s.get('wr_bytes', 0),
                sum(s.get('failed_%s_operations' % op, 0)
                    for op in ('rd', 'wr', 'flush')))

    def interface_stats(self, dev):
        """(rx bytes, rx packets, rx errors, rx drops, tx bytes, tx
        packets, tx errors, tx drops) of interface target ``dev``."""
        return self._stats(self._domain.interfaceStats, dev)

    def memory_stats(self):
        """virDomainMemoryStats as a dict (KiB; without a balloon only
        what QEMU knows: actual, rss, ...)."""
        return self._stats(self._domain.memoryStats)

    def block_io_tune(self, dev):
        """The live I/O limits of disk ``dev`` by libvirt's names
        (read_bytes_sec, ...; 0: no limit): virDomainGetBlockIoTune, or
        QEMU's query-block where libvirt cannot (microvm, see
        :meth:`_apply_io_limits`)."""
        tune = self._stats(self._domain.blockIoTune, dev,
                           libvirt.VIR_DOMAIN_AFFECT_LIVE)
        if tune is not None:
            return tune
        block = self._qmp_block('query-block', dev)
        if block is None:
            return None
        inserted = block.get('inserted', {})
        return {name: inserted.get(qmp, 0)
                for name, qmp in QMP_THROTTLE.items()}

    def _qmp_block(self, command, dev):
        """The entry of disk ``dev`` in QEMU's answer to ``command``
        (query-block, query-blockstats); None if there is none.

        libvirt (9.0, still so in 11.x) looks a virtio disk up in QEMU by
        the QOM path /machine/peripheral/<alias>/virtio-backend, which
        only virtio-pci devices have: on microvm's virtio-mmio disks its
        block statistics and I/O tuning fail ("cannot find statistics for
        device").  QEMU names the disk by its device id, libvirt's alias.
        """
        try:
            alias = self._disk_aliases().get(dev)
            blocks = self._qmp(command) if alias else ()
        except libvirt.libvirtError:
            return None
        for block in blocks:
            if block.get('qdev') in (alias, '/machine/peripheral/%s' % alias):
                return block
        return None

    def _qmp(self, command, **arguments):
        reply = libvirt_qemu.qemuMonitorCommand(
            self._domain, json.dumps({'execute': command,
                                      'arguments': arguments}), 0)
        return json.loads(reply)['return']

    def _disk_aliases(self):
        root = ET.fromstring(self.get_xml_desc())
        return {d.find('target').get('dev'): d.find('alias').get('name')
                for d in root.findall('devices/disk')
                if d.find('target') is not None and
                d.find('alias') is not None}

    def _apply_io_limits(self):
        """Throttle the disks our metadata names (microvm: libvirt cannot,
        domain._iotune_metadata says why) through QEMU's
        block_set_io_throttle; the limits last until QEMU exits, so every
        start applies them.  libvirt marks the domain tainted
        (custom-monitor) in its log."""
        meta = self.clear_metadata()
        wanted = meta and domain_xml.iotune_of_metadata(meta)
        if not wanted or not wanted[1]:
            return
        disks, limits = wanted
        aliases = self._disk_aliases()
        args = {qmp: limits.get(name, 0)
                for name, qmp in QMP_THROTTLE.items()}
        for dev in disks:
            self._qmp('block_set_io_throttle', id=aliases[dev], **args)

    def inject_nmi(self):
        """Send the guest a non-maskable interrupt (a crash dump, if its
        kernel is set up for one).  TriggerCrashDumpNotSupported if libvirt
        or QEMU cannot, InstanceNotRunning if the domain is not running."""
        try:
            self._domain.injectNMI(0)
        except libvirt.libvirtError as e:
            if _code(e) == libvirt.VIR_ERR_NO_SUPPORT:
                raise exception.TriggerCrashDumpNotSupported()
            if _code(e) in _GONE:
                raise exception.InstanceNotFound(instance_id=self.uuid)
            if _code(e) == libvirt.VIR_ERR_OPERATION_INVALID:
                raise exception.InstanceNotRunning(instance_id=self.uuid)
            raise

    # -- power --------------------------------------------------------------
    def launch(self, pause=False):
        """Start the defined domain (its vCPUs stopped when ``pause``, see
        :meth:`resume`); ClearContainerStartFailed with libvirt's reason."""
        try:
            self._domain.createWithFlags(
                libvirt.VIR_DOMAIN_START_PAUSED if pause else 0)
        except libvirt.libvirtError as e:
            raise clear_exc.ClearContainerStartFailed(
                name=self.name, reason=e.get_error_message())
        try:
            self._apply_io_limits()
        except (libvirt.libvirtError, KeyError, ValueError) as e:
            # Not without its limits: stopped, as if it had not started.
            self.destroy()
            raise clear_exc.ClearContainerStartFailed(
                name=self.name, reason='disk I/O limits: %s' % e)

    def pause(self):
        """Stop the vCPUs; QEMU and the guest's memory stay."""
        self._domain.suspend()

    def resume(self):
        """Run the vCPUs of a paused domain (or one launched paused)."""
        self._domain.resume()

    def shutdown(self):
        """Press the ACPI power button and return: the guest decides.
        GuestOperationFailed if libvirt refuses (the domain stopped
        meanwhile, or the guest has no ACPI)."""
        try:
            self._domain.shutdown()
        except libvirt.libvirtError as e:
            raise self._failed('shut down', e)

    def wait_for_shutoff(self, timeout, interval=0.2):
        """Poll until the domain is not active; True when it is off (or
        gone) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self._domain.isActive():
                    return True
            except libvirt.libvirtError as e:
                if _code(e) in _GONE:
                    return True
                raise
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def destroy(self):
        """Stop the domain at once (SIGTERM, then SIGKILL if QEMU ignores
        it); nothing to do if it is off or gone."""
        try:
            if self._domain.isActive():
                self._domain.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
            return
        except libvirt.libvirtError as e:
            if _code(e) in _NOT_RUNNING:
                return  # stopped or deleted meanwhile
        try:
            self._domain.destroy()
        except libvirt.libvirtError as e:
            if _code(e) not in _NOT_RUNNING:
                raise self._failed('destroy', e)

    # -- managed save (suspend to disk) ---------------------------------------
    def managed_save(self):
        """Save the guest's memory to disk and stop it; the next
        :meth:`launch` restores it."""
        self._domain.managedSave(0)

    def has_managed_save(self):
        return bool(self._domain.hasManagedSaveImage(0))

    def remove_managed_save(self):
        """Drop the saved memory: the next launch boots afresh."""
        self._domain.managedSaveRemove(0)

    # -- devices (NIC hot-plug on the PCI variant, nova_clear.hotplug) ----
    def machine_type(self):
        """The machine of the domain's definition (``pc-q35-7.2``,
        ``microvm``: libvirt expands ``q35`` to its versioned name)."""
        el = ET.fromstring(self.get_xml_desc(inactive=True)).find('os/type')
        return el.get('machine', '') if el is not None else ''

    def interface_xml(self, mac, inactive=False):
        """The ``<interface>`` with MAC address ``mac`` in the live (or
        ``inactive``: the persistent) definition, None if it has none."""
        root = ET.fromstring(self.get_xml_desc(inactive=inactive))
        for el in root.findall('devices/interface'):
            m = el.find('mac')
            if m is not None and m.get('address', '').lower() == mac.lower():
                return ET.tostring(el, encoding='unicode')
        return None

    def _device_flags(self):
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if self.is_active():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        return flags

    def attach_device(self, xml):
        """Add a device to the running guest (hot-plug) and to the
        persistent definition, or only to the definition of a stopped
        domain; GuestOperationFailed with libvirt's reason."""
        try:
            self._domain.attachDeviceFlags(xml, self._device_flags())
        except libvirt.libvirtError as e:
            raise self._failed('attach a device to', e)

    def detach_device(self, xml, mac, timeout=60, interval=0.2):
        """Remove the NIC ``mac`` (its ``xml``) from the persistent
        definition and from the running guest.  A live unplug needs the
        guest's consent (its driver unbinds, then it ejects the device
        through ACPI): wait up to ``timeout``
        seconds for QEMU to report the device gone; GuestOperationFailed
        if libvirt refuses or the guest keeps it."""
        try:
            self._domain.detachDeviceFlags(xml, self._device_flags())
        except libvirt.libvirtError as e:
            raise self._failed('detach a device from', e)
        deadline = time.monotonic() + timeout
        while self.is_active() and self.interface_xml(mac):
            if time.monotonic() >= deadline:
                raise clear_exc.GuestOperationFailed(
                    action='detach a device from', name=self.name,
                    reason='the guest did not release NIC %s within %ds '
                           '(no PCIe hot-plug support in its kernel?)'
                           % (mac, timeout))
            time.sleep(interval)

    # -- live migration (nova_clear.live_migration) -----------------------
    def migratable_xml(self):
        """The live XML as libvirt sends it to a migration's destination."""
        return self._domain.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)

    def live_migrate(self, dest_uri, dest_xml, migrate_disks,
                     migrate_uri=None, listen_address=None, paused=False):
        """Peer-to-peer live migration to the libvirtd at ``dest_uri`` (as
        this domain's libvirtd resolves it) with the ``migrate_disks``
        copied (block migration of the local writable disks over QEMU's
        NBD; the destination pre-created them), defined there from
        ``dest_xml`` and undefined here.  Returns when libvirt is done;
        libvirt's error (VIR_ERR_OPERATION_ABORTED after
        :meth:`abort_job`) otherwise, the domain still running here.
        ``paused``: its vCPUs stay stopped at the destination
        (``VIR_MIGRATE_PAUSED``)."""
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
                 libvirt.VIR_MIGRATE_PERSIST_DEST |
                 libvirt.VIR_MIGRATE_UNDEFINE_SOURCE |
                 libvirt.VIR_MIGRATE_NON_SHARED_INC)
        if paused:
            flags |= libvirt.VIR_MIGRATE_PAUSED
        params = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml,
                  libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: dest_xml,
                  libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: list(
                      migrate_disks)}
        if migrate_uri:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = migrate_uri
        if listen_address:
            params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = listen_address
        self._domain.migrateToURI3(dest_uri, params, flags)

    def job_stats(self, completed=False):
        """virDomainGetJobStats of the job in progress as a dict ({} when
        there is none or the domain left); ``completed``: of the last
        completed job (at a migration's destination: the migration's,
        ``downtime`` and ``time_elapsed`` in ms), kept for later readers."""
        flags = 0
        if completed:
            flags = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | getattr(
                libvirt, 'VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED', 2)
        try:
            return self._domain.jobStats(flags) or {}
        except libvirt.libvirtError:
            return {}

    def abort_job(self):
        """Cancel the migration in progress; the domain keeps running here.
        False if there was none to cancel."""
        try:
            self._domain.abortJob()
        except libvirt.libvirtError as e:
            if _code(e) in (libvirt.VIR_ERR_OPERATION_INVALID,
                            libvirt.VIR_ERR_NO_DOMAIN):
                return False
            raise
        return True

    @staticmethod
    def is_abort(error):
        """True for the error :meth:`live_migrate` raises when the
        migration was cancelled (:meth:`abort_job`)."""
        return isinstance(error, libvirt.libvirtError) and \
            _code(error) == libvirt.VIR_ERR_OPERATION_ABORTED

    def apply_io_limits(self):
        """The disk I/O limits of our metadata, again (a migrated domain's
        new QEMU has none: see :meth:`_apply_io_limits`)."""
        self._apply_io_limits()

    # -- definition ---------------------------------------------------------
    def undefine(self):
        """Remove the (stopped) domain's definition with its managed save
        image and NVRAM; nothing to do if it is gone."""
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                 libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        try:
            self._domain.undefineFlags(flags)
        except libvirt.libvirtError as e:
            if _code(e) not in _GONE:
                raise self._failed('undefine', e)
