"""ClearDriver: Nova's compute driver contract, translated into calls to the
libvirt wrappers (:mod:`nova_clear.host`, :mod:`nova_clear.libvirt_guest`),
the instances' disks (:mod:`nova_clear.instance_disks`), the pure XML
builder (:mod:`nova_clear.domain`) and the ports (:mod:`nova_clear.vif`,
:mod:`nova_clear.vif_plug`, :mod:`nova_clear.vif_events`).  The power
operations are the mixin :class:`nova_clear.power.PowerOperations`; the
day-two operations delegate to their modules (snapshot, rescue, migration,
hotplug, serial_console, diagnostics).  No XML, no subprocess and no
libvirt call live here.

Nova loads it as ``compute_driver = clear.ClearDriver`` through the
``nova.virt.clear`` shim.
"""

import os
import time

from oslo_log import log as logging
from oslo_utils import excutils

import nova.conf
from nova import exception
from nova.virt import driver
from nova.virt import hardware
import nova.virt.node

from nova_clear import capabilities as clear_capabilities
from nova_clear import conf as clear_conf
from nova_clear import cpu_traits
from nova_clear import diagnostics
from nova_clear import domain
from nova_clear import domain_pci
from nova_clear import exception as clear_exc
from nova_clear.guest import assets as guest_assets
from nova_clear.guest import network as guest_network
from nova_clear import host as clear_host
from nova_clear import hotplug
from nova_clear.i18n import _
from nova_clear.images import container
from nova_clear.images import disk as disk_images
from nova_clear import instance_disks
from nova_clear import live_migration_ops
from nova_clear import local_disks
from nova_clear import locking
from nova_clear import migration
from nova_clear import power
from nova_clear import privsep as clear_privsep
from nova_clear import rescue
from nova_clear import resources
from nova_clear import serial_console
from nova_clear import snapshot as clear_snapshot
from nova_clear import storage
from nova_clear import vif as clear_vif
from nova_clear import vif_events
from nova_clear import vif_plug

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
clear_conf.register_opts(CONF)

TRAIT_CLEAR_CONTAINERS = 'CUSTOM_CLEAR_CONTAINERS'


_instance_lock = locking.instance_lock


class ClearDriver(power.PowerOperations,
                  live_migration_ops.LiveMigrationOperations,
                  driver.ComputeDriver):
    """Runs every Nova instance as a Clear Container."""

    capabilities = clear_capabilities.CAPABILITIES

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi)
        self.host = clear_host.Host(CONF['clear'].connection_uri,
                                    lifecycle_callback=self.emit_event,
                                    owner=CONF.host)
        self.assets = guest_assets.AssetStore(CONF['clear'].assets_path,
                                              CONF['clear'].guest_kernel)
        self.instances_path = clear_conf.instances_path(CONF)
        self.image_cache = disk_images.ImageCache(
            clear_conf.image_cache_path(CONF))
        self.rootfs_cache = container.RootfsCache(
            os.path.join(self.image_cache.path, 'rootfs'),
            clear_privsep.build_rootfs, clear_conf.container_limits(CONF))
        self.disks = instance_disks.InstanceDisks(self.image_cache,
                                                  self.rootfs_cache)
        self.virt_type = None
        self.cpu_traits = cpu_traits.CpuTraits(self.host)
        self.serial_ports = serial_console.SerialPorts()

    # -- service life -----------------------------------------------------
    def init_host(self, host):
        """Check the guest assets, connect to libvirt, pick KVM or TCG."""
        assets = self.assets.load()
        if not guest_assets.agent_is_current(self.assets.path):
            LOG.warning('The guest assets in %s were built with another '
                        'version of the nova-clear agent: guests may lack '
                        'what this driver passes them (for example their '
                        'network configuration). Rebuild them with '
                        'nova-clear-build-guest.', self.assets.path)
        os.makedirs(self.instances_path, exist_ok=True)
        os.makedirs(self.image_cache.path, exist_ok=True)
        self.host.initialize()
        self.serial_ports.adopt_guests(self._guests())
        self.virt_type = self._choose_virt_type(assets)
        LOG.info('Clear Containers run with virt_type=%s, machine=%s, '
                 'kernel %s', self.virt_type, CONF['clear'].machine_type,
                 assets.kernel_release)

    def _choose_virt_type(self, assets):
        wanted = CONF['clear'].virt_type
        if wanted != 'auto':
            return wanted
        if not os.path.exists('/dev/kvm'):
            LOG.warning('virt_type=auto: /dev/kvm is missing, using qemu '
                        '(TCG, slow)')
            return 'qemu'
        t0 = time.monotonic()
        ok = self.host.probe_boot('kvm', assets, self.instances_path,
                                  CONF['clear'].kvm_probe_timeout)
        if ok:
            LOG.info('virt_type=auto: KVM probe boot succeeded in %.2fs',
                     time.monotonic() - t0)
            return 'kvm'
        LOG.warning('virt_type=auto: /dev/kvm exists but the guest kernel '
                    'did not boot under KVM within %ds (nested or '
                    'paravirtual KVM such as kvm-pvm?); falling back to '
                    'qemu (TCG). Set [clear]virt_type to skip the probe.',
                    CONF['clear'].kvm_probe_timeout)
        return 'qemu'

    def cleanup_host(self, host):
        pass

    # -- inventory ----------------------------------------------------------
    def get_available_nodes(self, refresh=False):
        return [CONF.host]

    def get_nodenames_by_uuid(self, refresh=False):
        return {nova.virt.node.get_local_node_uuid(): CONF.host}

    def node_is_available(self, nodename):
        return nodename == CONF.host

    def _guests(self):
        return self.host.list_guests(CONF.host)

    def get_available_resource(self, nodename):
        return resources.available_resource(
            self.host, self._guests(), self.instances_path, nodename,
            nova.virt.node.get_local_node_uuid())

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        ratios = self._get_allocation_ratios(
            provider_tree.data(nodename).inventory)
        result = resources.inventory(
            self.host, self._guests(), self.instances_path, ratios,
            self._get_reserved_host_disk_gb_from_config())
        provider_tree.update_inventory(nodename, result)
        traits = {TRAIT_CLEAR_CONTAINERS}
        traits.update(t for t, supported in
                      self.capabilities_as_traits().items() if supported)
        provider_tree.add_traits(nodename, *sorted(traits))
        self.cpu_traits.apply(provider_tree, nodename, self.virt_type)

    # -- instances ----------------------------------------------------------
    def list_instances(self):
        return [g.name for g in self._guests()]

    def list_instance_uuids(self):
        return [g.uuid for g in self._guests()]

    def instance_exists(self, instance):
        return self.host.find(instance.uuid) is not None

    def get_info(self, instance, use_cache=True):
        guest = self.host.lookup(instance.uuid)
        return hardware.InstanceInfo(state=guest.get_power_state())

    def get_host_ip_addr(self):
        return CONF.my_ip

    def _files(self, instance):
        return storage.InstanceFiles(self.instances_path, instance.uuid)

    def boot_config(self, instance, network_info=None):
        """The domain.BootConfig spawn() uses for ``instance`` (kernel,
        initramfs, disks, console log, command line inputs).  Public for
        tools that start the same guest without libvirt: the boot
        benchmarks' raw-QEMU floor (tools/bench_boot.py, boot_demo.py)."""
        return self._boot_config(instance, self._files(instance),
                                 network_info)

    def _boot_config(self, instance, files, network_info=None,
                     interfaces=None, image_meta=None):
        assets = self.assets.load()
        rootfs = files.rootfs_ref()
        machine = domain_pci.instance_machine_type(
            instance, image_meta, CONF['clear'].machine_type)
        domain_pci.check_assets(machine, assets)
        return domain.BootConfig(
            virt_type=self.virt_type or (
                CONF['clear'].virt_type if CONF['clear'].virt_type != 'auto'
                else 'qemu'),
            machine_type=machine,
            pcie_ports=CONF['clear'].num_pcie_ports,
            kernel=assets.kernel,
            initrd=assets.initrd,
            acpi=assets.acpi,
            disk_path=rootfs or files.disk,
            disk_format='raw' if rootfs else 'qcow2',
            upper_disk_path=files.upper if rootfs else None,
            local_disks=tuple(files.local_disks()),
            config_drive_path=(files.config_drive
                               if os.path.exists(files.config_drive)
                               else None),
            console_log=files.console_log,
            cpu_mode=CONF['clear'].cpu_mode,
            tb_cache_mb=CONF['clear'].tcg_tb_cache_mb,
            qboot_firmware=CONF['clear'].qboot_firmware,
            cmdline_extra=CONF['clear'].kernel_cmdline_extra,
            host=CONF.host,
            interfaces=(interfaces if interfaces is not None
                        else self._interfaces(instance, network_info)),
            network_args=tuple(guest_network.cmdline_args(network_info)),
            iotune=domain.disk_iotune(instance.flavor),
            serial_tcp=self.serial_ports.claim(instance.uuid),
        )

    @staticmethod
    def _interfaces(instance, network_info):
        try:
            ifaces = clear_vif.interfaces(network_info)
            clear_vif.check_host(ifaces)
        except clear_vif.VifError as e:
            raise clear_exc.PortNotPluggable(name=instance.name, reason=e)
        return ifaces

    def _define(self, instance, image_meta, files, network_info=None,
                interfaces=None):
        boot = self._boot_config(instance, files, network_info, interfaces,
                                 image_meta)
        xml = self._domain_xml(instance, image_meta, boot)
        files.write_domain_xml(xml)
        return self.host.define(xml)

    @staticmethod
    def _domain_xml(instance, image_meta, boot):
        """The domain XML of ``boot``, once its kernel command line (which
        carries the network configuration) is known to fit."""
        try:
            guest_network.check_length(
                domain.kernel_cmdline(instance, image_meta, boot))
        except guest_network.CommandLineTooLong as e:
            raise clear_exc.PortNotPluggable(name=instance.name, reason=e)
        return domain.domain_xml(instance, instance.flavor, image_meta, boot)

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        if driver.block_device_info_get_mapping(block_device_info):
            raise exception.InstanceDeployFailure(
                reason=_('volumes are not supported by Clear Containers'))
        # Refuse ports this host cannot plug, and ephemeral formats no
        # mkfs here makes, before creating anything.
        interfaces = self._interfaces(instance, network_info)
        local = local_disks.wanted(instance, block_device_info)
        domain_pci.instance_machine_type(instance, image_meta,
                                         CONF['clear'].machine_type)
        t0 = time.monotonic()
        files = self._files(instance)
        with _instance_lock(instance):
            if self.host.find(instance.uuid) is not None:
                raise exception.InstanceExists(name=instance.name)
            self.assets.load()
            created = not files.exists()
            files.create()
            guest = None
            try:
                self.disks.ensure(context, instance, image_meta, files)
                local_disks.ensure(instance, local, files)
                instance_disks.ensure_config_drive(
                    instance, injected_files, admin_password, network_info,
                    files)
                guest = self._define(instance, image_meta, files,
                                     network_info, interfaces)
                if power_on:
                    vif_events.plug_and_launch(self.virtapi, instance, guest,
                                               network_info)
                else:
                    vif_plug.plug(instance, network_info)
            except Exception:
                with excutils.save_and_reraise_exception():
                    LOG.error('Spawning Clear Container failed; cleaning up',
                              instance=instance)
                    self._remove_domain(instance, guest)
                    vif_plug.unplug(instance, network_info)
                    if created:
                        files.remove()
        LOG.info('Clear Container defined%s in %.2fs',
                 ' and started' if power_on else '',
                 time.monotonic() - t0, instance=instance)

    def _remove_domain(self, instance, guest=None):
        guest = guest or self.host.find(instance.uuid)
        if guest is None:
            self.serial_ports.release(instance.uuid)
            return
        try:
            guest.destroy()
            guest.undefine()
        except clear_exc.GuestOperationFailed as e:
            LOG.warning('Could not remove domain: %s', e, instance=instance)
        else:
            self.serial_ports.release(instance.uuid)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        with _instance_lock(instance):
            guest = self.host.find(instance.uuid)
            if guest is not None:
                guest.destroy()
        self.cleanup(context, instance, network_info, block_device_info,
                     destroy_disks, destroy_secrets=destroy_secrets)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        with _instance_lock(instance):
            # The domain first: unplugging deletes tap devices QEMU uses.
            self._remove_domain(instance)
            if destroy_vifs:
                self.unplug_vifs(instance, network_info)
            if destroy_disks:
                self._files(instance).remove()
                migration.remove_on_delete(self._files(instance), instance)

    def rebuild(self, context, instance, image_meta, injected_files,
                admin_password, allocations, bdms, detach_block_devices,
                attach_block_devices, network_info=None, evacuate=False,
                block_device_info=None, preserve_ephemeral=False,
                accel_uuids=None, reimage_boot_volume=False):
        """Nova's default rebuild (NotImplementedError: the compute
        manager's destroy and spawn; for an evacuation only the spawn,
        on this new host, the disks made anew from Glance), but for
        ``preserve_ephemeral``, which it refuses: the same, keeping the
        ephemeral disks."""
        if not preserve_ephemeral or evacuate or reimage_boot_volume:
            raise NotImplementedError()
        local_disks.rebuild_preserving_ephemeral(
            self, context, instance, image_meta, injected_files,
            admin_password, allocations, bdms, detach_block_devices,
            attach_block_devices, network_info, block_device_info)

    def snapshot(self, context, instance, image_id, update_task_state):
        """A disk image of the flattened disk, or a container image with
        one more layer (:mod:`nova_clear.snapshot`); live, paused only
        while the instance's own disk is copied."""
        clear_snapshot.Snapshotter(self).snapshot(
            context, instance, image_id, update_task_state,
            _instance_lock(instance))

    # -- rescue (nova_clear.rescue) -----------------------------------------
    def rescue(self, context, instance, network_info, image_meta,
               rescue_password, block_device_info, share_info=None):
        with _instance_lock(instance):
            rescue.rescue(self, context, instance, network_info, image_meta)

    def unrescue(self, context, instance):
        with _instance_lock(instance):
            rescue.unrescue(self, context, instance)

    # -- resize and cold migration (nova_clear.migration) -------------------
    def migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                   network_info, block_device_info=None,
                                   timeout=0, retry_interval=0):
        with _instance_lock(instance):
            return migration.migrate_disk_and_power_off(
                self, context, instance, dest, flavor, network_info,
                timeout, retry_interval, block_device_info)

    def finish_migration(self, context, migration_, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        with _instance_lock(instance):
            migration.finish_migration(
                self, context, migration_, instance, disk_info,
                network_info, image_meta, resize_instance, power_on,
                block_device_info)

    def confirm_migration(self, context, migration_, instance, network_info):
        with _instance_lock(instance):
            migration.confirm_migration(self, context, migration_, instance,
                                        network_info)

    def finish_revert_migration(self, context, instance, network_info,
                                migration_, block_device_info=None,
                                power_on=True, share_info=None):
        with _instance_lock(instance):
            migration.finish_revert_migration(self, context, instance,
                                              network_info, power_on)

    # -- diagnostics (nova_clear.diagnostics), crash dump --------------------
    def trigger_crash_dump(self, instance):
        self.host.lookup(instance.uuid).inject_nmi()

    get_host_uptime = staticmethod(diagnostics.host_uptime)

    def get_diagnostics(self, instance):
        return diagnostics.legacy(self.host.lookup(instance.uuid))

    def get_instance_diagnostics(self, instance):
        return diagnostics.instance_diagnostics(
            self.host.lookup(instance.uuid), instance, self.virt_type)

    # -- image cache ----------------------------------------------------------
    def manage_image_cache(self, context, all_instances):
        """Nova's periodic image cache pass ([image_cache] options)."""
        if not CONF.image_cache.remove_unused_base_images:
            return
        min_age = CONF.image_cache.remove_unused_original_minimum_age_seconds
        listed = {inst.image_ref for inst in all_instances
                  if inst.image_ref}
        self.disks.remove_unused(self.instances_path, listed, min_age)

    # -- console --------------------------------------------------------------
    def get_console_output(self, context, instance):
        files = self._files(instance)
        if self.host.find(instance.uuid) is None and not files.exists():
            raise exception.ConsoleNotAvailable()
        return files.console_tail(CONF['clear'].console_log_max_bytes)

    def get_serial_console(self, context, instance):
        """Where nova-serialproxy connects (nova_clear.serial_console)."""
        return serial_console.console(self.host.find(instance.uuid))

    # -- networking ---------------------------------------------------------
    # macvtap ports need nothing on the host before the domain starts:
    # libvirt creates the macvtap device from the domain's <interface
    # type='direct'> and deletes it when QEMU exits.  OVS ports are plugged
    # by os-vif (nova_clear.vif_plug).  Nova calls these on host start-up
    # (plug again what a host reboot lost) and around operations.
    def plug_vifs(self, instance, network_info):
        self._interfaces(instance, network_info)
        vif_plug.plug(instance, network_info)

    def unplug_vifs(self, instance, network_info):
        vif_plug.unplug(instance, network_info)

    # -- interfaces on the PCI variant (nova_clear.hotplug) -----------------
    def attach_interface(self, context, instance, image_meta, vif):
        with _instance_lock(instance):
            hotplug.attach(self, instance, vif)

    def detach_interface(self, context, instance, vif):
        with _instance_lock(instance):
            hotplug.detach(self, instance, vif)
