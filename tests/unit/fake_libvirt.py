"""A small in-memory libvirt connection for unit tests.

Every behaviour faked here is exercised against the real libvirtd + QEMU in
tests/functional (define/start/destroy/undefine, states, managed save,
metadata lookup, errors).
"""

from xml.etree import ElementTree as ET

import libvirt

from nova_clear import domain as domain_xml


def _error(code, msg):
    err = libvirt.libvirtError(msg)
    err.err = (code, 0, msg, 0, None, None, None, 0, 0)
    return err


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
        self.vcpus = int(root.findtext('vcpu') or 1)
        self.memory_kib = int(root.findtext('memory') or 128) * 1024
        self.st = libvirt.VIR_DOMAIN_SHUTOFF
        self.saved = False
        self.fail_start = None

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
        return [self.st, self.memory_kib, self.memory_kib, self.vcpus, 0]

    def metadata(self, kind, uri):
        if not self._ours or uri != domain_xml.NS_URI:
            raise _error(libvirt.VIR_ERR_NO_DOMAIN_METADATA, 'no metadata')
        return self._meta

    def XMLDesc(self, flags):
        return self.xml

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


class FakeConnection:

    def __init__(self, cpus=4, memory_mb=8192):
        self.domains = {}
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.fail_start = None
        self.guest_honours_acpi = True
        # called as on_start(domain, paused) after each start
        self.on_start = None

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

    def getHostname(self):
        return 'fakehost'

    def getLibVersion(self):
        return 9000000

    def getVersion(self):
        return 7002000
