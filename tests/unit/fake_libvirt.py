"""A small in-memory libvirt connection for unit tests.

Every behaviour faked here is exercised against the real libvirtd + QEMU in
tests/functional (define/start/destroy/undefine, states, managed save,
metadata lookup, errors).
"""

import json
from xml.etree import ElementTree as ET

import libvirt

from nova_clear import domain as domain_xml


def _error(code, msg):
    err = libvirt.libvirtError(msg)
    err.err = (code, 0, msg, 0, None, None, None, 0, 0)
    return err


# A host CPU as libvirt lists it: features beyond its model's (kvm64).
HOST_CAPABILITIES = """<capabilities><host><cpu><arch>x86_64</arch>
<model>kvm64</model><vendor>AMD</vendor>
<feature name='avx2'/><feature name='aes'/><feature name='ssse3'/>
</cpu></host></capabilities>"""

BASELINE = {
    'kvm64': """<cpu mode='custom' match='exact'><model>kvm64</model>
<feature policy='require' name='sse'/><feature policy='require' name='sse2'/>
<feature policy='require' name='avx2'/><feature policy='require' name='aes'/>
<feature policy='require' name='ssse3'/>
<feature policy='disable' name='svm'/></cpu>""",
    'qemu64': """<cpu mode='custom' match='exact'><model>qemu64</model>
<feature policy='require' name='sse'/><feature policy='require' name='sse2'/>
<feature policy='require' name='svm'/></cpu>""",
}


class FakeDomain:

    def __init__(self, conn, xml):
        self.conn = conn
        self.xml = xml
        root = ET.fromstring(xml)
        self._name = root.findtext('name')
        self._uuid = root.findtext('uuid')
        inst = root.find('metadata/{%s}instance' % domain_xml.NS_URI)
        self._ours = inst is not None
        self._meta = ET.tostring(inst, encoding='unicode') \
            if inst is not None else None
        self.nr_vcpus = int(root.findtext('vcpu') or 1)
        self.memory_kib = int(root.findtext('memory') or 128) * 1024
        self.st = libvirt.VIR_DOMAIN_SHUTOFF
        self.saved = False
        self.fail_start = None
        # Stats of a running domain, as tests set them.
        self.disks = [d.find('target').get('dev')
                      for d in root.findall('devices/disk')]
        self.block = {dev: (n + 1, 1000 * (n + 1), n, 500 * n, 0)
                      for n, dev in enumerate(self.disks)}
        self.nics = {i.find('target').get('dev'):
                     (100, 2, 0, 0, 200, 3, 0, 1)
                     for i in root.findall('devices/interface')
                     if i.find('target') is not None}
        self.mem_stats = {'actual': self.memory_kib, 'rss': 54321}
        # QEMU's throttling per device id (block_set_io_throttle).
        self.throttle = {}
        # injectNMI: None (works), or the libvirt error code to raise.
        self.nmi_error = None
        self.nmis = 0
        # attach/detachDeviceFlags: failure message, guest not releasing.
        self.fail_attach = None
        self.guest_keeps_devices = False
        self.device_calls = []

    def name(self):
        return self._name

    def UUIDString(self):
        return self._uuid

    def isActive(self):
        self._gone()
        return self.st != libvirt.VIR_DOMAIN_SHUTOFF

    def state(self):
        self._gone()
        return [self.st, 0]

    def info(self):
        self._gone()
        return [self.st, self.memory_kib, self.memory_kib, self.nr_vcpus, 0]

    def vcpus(self):
        self._running()
        return ([(n, 1, 1000000 * (n + 1), n) for n in range(self.nr_vcpus)],
                [(True,) for _ in range(self.nr_vcpus)])

    def blockStats(self, dev):
        self._running()
        if 'microvm' in self.xml:
            # libvirt looks for /machine/peripheral/<alias>/virtio-backend
            raise _error(libvirt.VIR_ERR_INTERNAL_ERROR,
                         'cannot find statistics for device')
        if dev not in self.block:
            raise _error(libvirt.VIR_ERR_INVALID_ARG,
                         'invalid path: %s' % dev)
        return self.block[dev]

    def interfaceStats(self, dev):
        self._running()
        if dev not in self.nics:
            raise _error(libvirt.VIR_ERR_INVALID_ARG,
                         'invalid path, \'%s\' is not a known interface'
                         % dev)
        return self.nics[dev]

    def memoryStats(self):
        self._running()
        return dict(self.mem_stats)

    def injectNMI(self, flags):
        self._gone()
        if self.nmi_error is not None:
            raise _error(self.nmi_error, 'NMI refused')
        self._running()
        self.nmis += 1

    def metadata(self, kind, uri):
        if not self._ours or uri != domain_xml.NS_URI:
            raise _error(libvirt.VIR_ERR_NO_DOMAIN_METADATA, 'no metadata')
        return self._meta

    def XMLDesc(self, flags):
        if flags & libvirt.VIR_DOMAIN_XML_INACTIVE or not self.isActive():
            return self.xml
        # Live: libvirt's aliases of the disks.
        root = ET.fromstring(self.xml)
        for n, disk in enumerate(root.findall('devices/disk')):
            ET.SubElement(disk, 'alias', name='virtio-disk%d' % n)
        return ET.tostring(root, encoding='unicode')

    def blockIoTune(self, dev, flags):
        self._running()
        if 'microvm' in self.xml:
            # libvirt looks for /machine/peripheral/<alias>/virtio-backend
            raise _error(libvirt.VIR_ERR_INTERNAL_ERROR,
                         'cannot find throttling info for device')
        root = ET.fromstring(self.xml)
        for disk in root.findall('devices/disk'):
            if disk.find('target').get('dev') == dev:
                tune = disk.find('iotune')
                return {e.tag: int(e.text) for e in
                        (tune if tune is not None else ())}
        raise _error(libvirt.VIR_ERR_INVALID_ARG, 'disk %s not found' % dev)

    def qmp(self, command):
        """What QEMU answers the few QMP commands the driver sends."""
        self._running()
        cmd = json.loads(command)
        args = cmd.get('arguments', {})
        if cmd['execute'] == 'block_set_io_throttle':
            self.throttle[args.pop('id')] = args
            return {}
        if cmd['execute'] == 'query-blockstats':
            return [{'qdev': 'virtio-disk%d' % n,
                     'stats': {'rd_operations': s[0], 'rd_bytes': s[1],
                               'wr_operations': s[2], 'wr_bytes': s[3],
                               'failed_rd_operations': s[4]}}
                    for n, s in enumerate(self.block.values())]
        if cmd['execute'] == 'query-block':
            return [{'qdev': '/machine/peripheral/%s' % qdev,
                     'inserted': dict(tune)}
                    for qdev, tune in self.throttle.items()]
        raise _error(libvirt.VIR_ERR_INTERNAL_ERROR,
                     'unknown QMP command %s' % cmd['execute'])

    def _gone(self):
        if self._uuid not in self.conn.domains:
            raise _error(libvirt.VIR_ERR_NO_DOMAIN,
                         'no domain with matching uuid %s' % self._uuid)

    def _running(self):
        self._gone()
        if not self.isActive():
            raise _error(libvirt.VIR_ERR_OPERATION_INVALID,
                         'domain is not running')

    def createWithFlags(self, flags):
        if self.isActive():
            raise _error(libvirt.VIR_ERR_OPERATION_INVALID,
                         'domain is already running')
        if self.fail_start or self.conn.fail_start:
            raise _error(libvirt.VIR_ERR_INTERNAL_ERROR,
                         self.fail_start or self.conn.fail_start)
        paused = bool(flags & libvirt.VIR_DOMAIN_START_PAUSED)
        self.st = (libvirt.VIR_DOMAIN_PAUSED if paused
                   else libvirt.VIR_DOMAIN_RUNNING)
        self.saved = False
        if self.conn.on_start is not None:
            self.conn.on_start(self, paused)

    # -- devices: one definition for live and config; calls recorded.
    def attachDeviceFlags(self, xml, flags):
        self._gone()
        if self.fail_attach:
            raise _error(libvirt.VIR_ERR_INTERNAL_ERROR, self.fail_attach)
        self.device_calls.append(('attach', flags))
        root = ET.fromstring(self.xml)
        root.find('devices').append(ET.fromstring(xml))
        self.xml = ET.tostring(root, encoding='unicode')

    def detachDeviceFlags(self, xml, flags):
        self._gone()
        self.device_calls.append(('detach', flags))
        if self.guest_keeps_devices and self.isActive():
            return  # libvirt returns; the guest never releases it
        mac = ET.fromstring(xml).find('mac').get('address')
        root = ET.fromstring(self.xml)
        devices = root.find('devices')
        for el in devices.findall('interface'):
            if el.find('mac').get('address') == mac:
                devices.remove(el)
                break
        else:
            raise _error(libvirt.VIR_ERR_DEVICE_MISSING, 'no device %s' % mac)
        self.xml = ET.tostring(root, encoding='unicode')

    def destroyFlags(self, flags):
        self._running()
        self.st = libvirt.VIR_DOMAIN_SHUTOFF

    def destroy(self):
        self._running()
        self.st = libvirt.VIR_DOMAIN_SHUTOFF

    def undefineFlags(self, flags):
        self._gone()
        self.undefine_flags = flags
        self.conn.domains.pop(self._uuid, None)

    def shutdown(self):
        self._running()
        if self.conn.guest_honours_acpi:
            self.st = libvirt.VIR_DOMAIN_SHUTOFF

    def suspend(self):
        self.st = libvirt.VIR_DOMAIN_PAUSED

    def resume(self):
        self.st = libvirt.VIR_DOMAIN_RUNNING

    def managedSave(self, flags):
        self.st = libvirt.VIR_DOMAIN_SHUTOFF
        self.saved = True

    def hasManagedSaveImage(self, flags):
        return self.saved

    def managedSaveRemove(self, flags):
        self.saved = False

    # -- live migration: what migrateToURI3 was given; tests set
    # migrate_error (a libvirt error code) or on_migrate(domain).
    migrate_error = None
    on_migrate = None
    # jobStats(VIR_DOMAIN_JOB_STATS_COMPLETED)
    completed_job = {}

    def migrateToURI3(self, uri, params, flags):
        self._running()
        self.migrated = (uri, params, flags)
        if self.on_migrate is not None:
            self.on_migrate(self)
        if self.migrate_error is not None:
            raise _error(self.migrate_error, 'migration failed')
        self.st = libvirt.VIR_DOMAIN_SHUTOFF
        self.conn.domains.pop(self._uuid, None)

    def jobStats(self, flags):
        if flags & libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return dict(self.completed_job)
        self._running()
        return {'type': libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
                'memory_total': 100, 'memory_processed': 40,
                'memory_remaining': 60}

    def abortJob(self):
        self._running()
        self.aborted = True


def qemu_monitor_command(domain, command, flags):
    """libvirt_qemu.qemuMonitorCommand on a FakeDomain."""
    return json.dumps({'return': domain.qmp(command), 'id': 'libvirt-1'})


class FakeConnection:

    def __init__(self, cpus=4, memory_mb=8192):
        self.domains = {}
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.fail_start = None
        self.guest_honours_acpi = True
        # called as on_start(domain, paused) after each start
        self.on_start = None
        self.capabilities = HOST_CAPABILITIES
        # CPU model -> baselineCPU's expanded XML; None: not supported.
        self.baseline = dict(BASELINE)

    def isAlive(self):
        return True

    def defineXML(self, xml):
        dom = FakeDomain(self, xml)
        old = self.domains.get(dom.UUIDString())
        if old is not None:
            dom.st, dom.saved = old.st, old.saved
        self.domains[dom.UUIDString()] = dom
        return dom

    def lookupByUUIDString(self, uuid):
        try:
            return self.domains[uuid]
        except KeyError:
            raise _error(libvirt.VIR_ERR_NO_DOMAIN, 'no domain %s' % uuid)

    def lookupByName(self, name):
        for dom in self.domains.values():
            if dom.name() == name:
                return dom
        raise _error(libvirt.VIR_ERR_NO_DOMAIN, 'no domain %s' % name)

    def listAllDomains(self, flags):
        return list(self.domains.values())

    def getInfo(self):
        return ['x86_64', self.memory_mb, self.cpus, 2000, 1, 1, 4, 1]

    def getCapabilities(self):
        return self.capabilities

    def baselineCPU(self, cpus, flags):
        if self.baseline is None:
            raise _error(libvirt.VIR_ERR_NO_SUPPORT, 'no baseline')
        model = ET.fromstring(cpus[0]).findtext('model')
        return self.baseline[model]

    def getHostname(self):
        return 'fakehost'

    def getLibVersion(self):
        return 9000000

    def getVersion(self):
        return 7002000
