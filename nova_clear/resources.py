"""What this host offers Nova: the resource tracker's report
(``get_available_resource``) and placement's inventory
(``update_provider_tree``).

VCPU and MEMORY_MB come from virNodeGetInfo, DISK_GB from the filesystem of
the instances path.  Each running Clear Container costs its QEMU process
(``[clear]memory_overhead_mb``) on top of its flavor's memory: counted as
used, and reserved in placement so it does not overcommit.
"""

import os

from oslo_serialization import jsonutils
from oslo_utils import units
import os_resource_classes as orc  # noqa: H306

import nova.conf
from nova.objects import fields as obj_fields

from nova_clear import conf as clear_conf

CONF = nova.conf.CONF
clear_conf.register_opts(CONF)
HYPERVISOR_TYPE = obj_fields.HVType.QEMU


def disk_gb(path):
    """(total, free) GiB of the filesystem holding ``path``."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize // units.Gi
    free = st.f_bavail * st.f_frsize // units.Gi
    return total, free


def _cpu_info(host):
    arch, memory_mb, cpus = host.node_info()[:3]
    return arch, memory_mb, cpus


def available_resource(host, guests, instances_path, nodename, node_uuid):
    """The resource tracker's dict of the host: its facts, and what the
    running ones of ``guests`` (this host's) use."""
    arch, memory_mb, cpus = _cpu_info(host)
    total_gb, free_gb = disk_gb(instances_path)
    vcpus_used = mem_used = 0
    for guest in guests:
        info = guest.active_info()
        if info is not None:
            vcpus_used += info.vcpus
            mem_used += (info.max_mem_kib // 1024 +
                         CONF['clear'].memory_overhead_mb)
    _libvirt_ver, qemu_ver = host.version()
    return {
        'vcpus': cpus,
        'memory_mb': memory_mb,
        'local_gb': total_gb,
        'vcpus_used': vcpus_used,
        'memory_mb_used': mem_used,
        'local_gb_used': total_gb - free_gb,
        # What libvirt's getType() says, as nova's libvirt driver shows.
        'hypervisor_type': 'QEMU',
        'hypervisor_version': qemu_ver,
        'hypervisor_hostname': nodename,
        'uuid': node_uuid,
        'cpu_info': jsonutils.dumps({'arch': arch, 'vendor': None,
                                     'model': None, 'features': [],
                                     'topology': {'cells': 1,
                                                  'sockets': 1,
                                                  'cores': cpus,
                                                  'threads': 1}}),
        'disk_available_least': free_gb,
        'supported_instances': [(obj_fields.Architecture.X86_64,
                                 HYPERVISOR_TYPE,
                                 obj_fields.VMMode.HVM)],
        'numa_topology': None,
        # nova's resource tracker parses this JSON list on every update.
        'pci_passthrough_devices': jsonutils.dumps([]),
    }


def inventory(host, guests, instances_path, ratios, reserved_disk_gb):
    """Placement's inventory of the host (VCPU, MEMORY_MB and, when the
    instances path has room, DISK_GB), with the allocation ``ratios`` and
    reserved disk nova's configuration gives."""
    _arch, memory_mb, cpus = _cpu_info(host)
    total_gb, _free = disk_gb(instances_path)
    running = sum(1 for g in guests if g.active_info() is not None)
    mem_reserved = (CONF.reserved_host_memory_mb +
                    CONF['clear'].memory_overhead_mb * running)
    result = {
        orc.VCPU: {
            'total': cpus, 'min_unit': 1, 'max_unit': cpus,
            'step_size': 1, 'allocation_ratio': ratios[orc.VCPU],
            'reserved': CONF.reserved_host_cpus,
        },
        orc.MEMORY_MB: {
            'total': memory_mb, 'min_unit': 1, 'max_unit': memory_mb,
            'step_size': 1, 'allocation_ratio': ratios[orc.MEMORY_MB],
            'reserved': min(mem_reserved, memory_mb),
        },
    }
    if total_gb > 0:
        result[orc.DISK_GB] = {
            'total': total_gb, 'min_unit': 1, 'max_unit': total_gb,
            'step_size': 1, 'allocation_ratio': ratios[orc.DISK_GB],
            'reserved': min(reserved_disk_gb, total_gb),
        }
    return result
