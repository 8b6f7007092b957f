"""Configuration options of the Clear Containers driver (``[clear]``)."""

import os

from oslo_config import cfg

# Note: ``ConfigOpts.clear`` is a method, so code reads these options as
# ``CONF['clear'].option`` rather than ``CONF.clear.option``.
GROUP = cfg.OptGroup(
    'clear',
    title='Clear Containers driver options',
    help='Options for nova-clear, the Nova virt driver that runs every '
         'instance as a Clear Container: a lightweight virtual machine with '
         'no firmware, almost no devices and a host-provided guest kernel.')

OPTS = [
    cfg.StrOpt('connection_uri',
               default='qemu:///system',
               help='libvirt URI of the hypervisor that runs the Clear '
                    'Containers.'),
    cfg.StrOpt('virt_type',
               default='auto',
               choices=[('auto', 'Use KVM when a probe boot of the guest '
                                 'kernel succeeds under KVM, else QEMU (TCG)'),
                        ('kvm', 'Hardware virtualisation, no probe'),
                        ('qemu', 'Software emulation (TCG), slow but works '
                                 'everywhere, e.g. in nested CI')],
               help='Accelerator for the Clear Containers. With "auto" the '
                    'driver boots the guest kernel once under KVM when the '
                    'service starts and falls back to "qemu" with a warning '
                    'if it does not reach the agent within '
                    'kvm_probe_timeout seconds (nested or paravirtual '
                    'hypervisors such as kvm-pvm expose /dev/kvm but cannot '
                    'boot stock kernels).'),
    cfg.IntOpt('kvm_probe_timeout',
               default=20, min=1,
               help='Seconds the KVM probe boot may take before KVM is '
                    'declared unusable (virt_type=auto only).'),
    cfg.StrOpt('machine_type',
               default='microvm',
               choices=[('microvm', 'QEMU microvm: no PCI, no firmware, '
                                    'virtio-mmio devices'),
                        ('q35', 'q35 with the qboot firmware, for devices '
                                'that need PCI')],
               help='Default QEMU machine type (variant) of the Clear '
                    'Containers; a flavor\'s "clear:machine_type" extra '
                    'spec or an image\'s "hw_machine_type" property '
                    'chooses per instance. Only q35 hot-plugs NICs '
                    '(interface attach/detach).'),
    cfg.IntOpt('num_pcie_ports',
               default=4, min=0, max=24,
               help='Spare PCIe root ports of a q35 Clear Container: how '
                    'many NICs can be hot-plugged into it at a time (as '
                    'nova\'s [libvirt] num_pcie_ports, but counted on top '
                    'of the ports its boot devices take). microvm has '
                    'none.'),
    cfg.StrOpt('qboot_firmware',
               default='/usr/share/qemu/qboot.rom',
               help='Minimal firmware used with machine_type=q35 instead '
                    'of SeaBIOS.'),
    cfg.StrOpt('cpu_mode',
               default='host-passthrough',
               choices=['host-passthrough', 'host-model', 'none'],
               help='CPU model for KVM guests. TCG guests always use '
                    'QEMU\'s default model.'),
    cfg.StrOpt('assets_path',
               default='/var/lib/nova-clear/guest',
               help='Directory holding the guest kernel, the agent '
                    'initramfs and their manifest.json, as written by '
                    '"nova-clear-build-guest --dest PATH".'),
    cfg.StrOpt('guest_kernel',
               default='auto',
               choices=[('auto', 'The minimal kernel when it was built '
                                 '(<assets_path>/minimal), else the '
                                 'distribution kernel'),
                        ('minimal', 'Only the minimal kernel'),
                        ('distribution', 'Only the distribution kernel')],
               help='Which guest kernel boots the Clear Containers.'),
    cfg.StrOpt('kernel_cmdline_extra',
               default='',
               help='Extra arguments appended to every guest kernel '
                    'command line (before the image\'s os_command_line).'),
    cfg.StrOpt('instances_path',
               help='Where per-instance files (disk overlay, console log, '
                    'domain XML) live. Defaults to [DEFAULT]instances_path.'),
    cfg.StrOpt('image_cache_path',
               help='Where Glance images are cached, read-only and shared '
                    'by all instances of an image. Defaults to '
                    '<instances_path>/_clear_base.'),
    cfg.IntOpt('container_max_layer_entries',
               default=100000, min=1,
               help='Most tar members one layer of a container image may '
                    'hold; a bigger layer makes the image unacceptable '
                    '(the instance goes to ERROR naming the layer).'),
    cfg.IntOpt('container_max_image_entries',
               default=150000, min=1,
               help='Most tar members all layers of a container image may '
                    'hold together.'),
    cfg.IntOpt('container_max_path_depth',
               default=256, min=8, max=512,
               help='Most components of a path in a container image.'),
    cfg.IntOpt('container_max_unpacked_gb',
               default=20, min=1,
               help='Most GiB a container image may unpack to, also for '
                    'flavors with root_gb = 0 (otherwise the flavor\'s '
                    'root disk bounds it).'),
    cfg.IntOpt('console_log_max_bytes',
               default=100 * 1024, min=1024,
               help='Most bytes of the console log returned by "openstack '
                    'console log show". The log file itself is written by '
                    'virtlogd, which rotates it at its own max_size (2 MiB '
                    'by default) and keeps it across reboots.'),
    cfg.IntOpt('memory_overhead_mb',
               default=96, min=0,
               help='Host memory reserved in placement for each running '
                    'instance on top of its flavor (QEMU itself: measured '
                    '~49 MiB under KVM, ~87 MiB under TCG for a 128 MiB '
                    'guest).'),
    cfg.IntOpt('tcg_tb_cache_mb',
               default=32, min=0,
               help='Translation block cache of TCG guests, in MiB; 0 '
                    'keeps QEMU\'s default (~1 GiB of address space).'),
    cfg.StrOpt('live_migration_uri',
               default='qemu+tcp://%s/system',
               help='libvirt URI of a live migration\'s destination, as '
                    'this host\'s libvirtd (not nova-compute) reaches it '
                    '(peer-to-peer migration); "%s" becomes the '
                    'destination\'s host name, as in nova\'s [libvirt] '
                    'live_migration_uri. Two hosts on one machine give '
                    'each other\'s socket instead, e.g. '
                    '"qemu+unix:///system?socket=/var/lib/nova-clear-host2'
                    '/run/libvirt-sock" (see doc/source/migration.rst).'),
    cfg.StrOpt('live_migration_inbound_addr',
               help='Address other hosts send a live migration\'s memory '
                    'and disks to when this host is the destination '
                    '(QEMU\'s migration and NBD ports listen there; as '
                    'nova\'s [libvirt] live_migration_inbound_addr). '
                    'Unset: libvirt uses the destination\'s host name.'),
    cfg.IntOpt('live_migration_completion_timeout',
               default=800, min=0,
               help='Seconds a live migration may take before it is '
                    'aborted (the instance keeps running on the source); '
                    '0: no limit.'),
    cfg.IntOpt('soft_reboot_timeout',
               default=60, min=0,
               help='Seconds a soft reboot waits for the guest to shut '
                    'down cleanly before it falls back to a hard reboot.'),
]


def instances_path(conf):
    return conf['clear'].instances_path or conf.instances_path


def image_cache_path(conf):
    """The image cache: the driver's, and the only place where the privsep
    daemon builds container root filesystems."""
    return conf['clear'].image_cache_path or \
        os.path.join(instances_path(conf), '_clear_base')


def container_limits(conf):
    """What one container image may hold (:class:`tarstream.Limits`
    fields; the unpacked size is further bounded by the flavor's disk)."""
    c = conf['clear']
    return dict(layer_entries=c.container_max_layer_entries,
                image_entries=c.container_max_image_entries,
                path_depth=c.container_max_path_depth,
                unpacked_bytes=c.container_max_unpacked_gb * 1024 ** 3)


def register_opts(conf):
    conf.register_group(GROUP)
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]
