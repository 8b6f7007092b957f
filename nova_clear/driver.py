"""ClearDriver: Nova's compute driver contract, translated into calls to the
libvirt wrappers (:mod:`nova_clear.host`, :mod:`nova_clear.libvirt_guest`),
the image cache (:mod:`nova_clear.images.disk`) and the pure XML builder
(:mod:`nova_clear.domain`).  No XML, no subprocess and no libvirt call live
here.

Nova loads it as ``compute_driver = clear.ClearDriver`` through the
``nova.virt.clear`` shim.
"""

import os
import time

from oslo_concurrency import lockutils
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import excutils
from oslo_utils import units
from oslo_utils import uuidutils
import os_resource_classes as orc  # noqa: H306

from nova.api.metadata import base as instance_metadata
import nova.conf
from nova import exception
from nova.image import glance
from nova import objects
from nova.objects import fields as obj_fields
from nova.virt import configdrive
from nova.virt import driver
from nova.virt import hardware
import nova.virt.node

from nova_clear import conf as clear_conf
from nova_clear import domain
from nova_clear import exception as clear_exc
from nova_clear.guest import assets as guest_assets
from nova_clear.guest import network as guest_network
from nova_clear import host as clear_host
from nova_clear.i18n import _
from nova_clear.images import container
from nova_clear.images import disk as disk_images
from nova_clear.images import workload
from nova_clear import privsep as clear_privsep
from nova_clear import storage
from nova_clear import vif as clear_vif
from nova_clear import vif_plug

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
clear_conf.register_opts(CONF)

TRAIT_CLEAR_CONTAINERS = 'CUSTOM_CLEAR_CONTAINERS'
HYPERVISOR_TYPE = obj_fields.HVType.QEMU


def _instance_lock(instance):
    # One operation at a time per instance; different instances proceed in
    # parallel (Nova 34 calls drivers from native threads).
    return lockutils.lock('nova-clear-instance-%s' % instance.uuid)


class ClearDriver(driver.ComputeDriver):
    """Runs every Nova instance as a Clear Container."""

    capabilities = {
        # manage_image_cache removes cached images and container root
        # filesystems no instance uses any more.
        'has_imagecache': True,
        'supports_evacuate': False,
        'supports_migrate_to_same_host': False,
        # microvm has no bus that hot-plugs: virtio-mmio devices exist
        # from boot to power-off, and the agent configures addresses once.
        # Ports are chosen at server create; change them by rebuilding.
        'supports_attach_interface': False,
        'supports_device_tagging': False,
        'supports_tagged_attach_interface': False,
        'supports_tagged_attach_volume': False,
        'supports_extend_volume': False,
        'supports_multiattach': False,
        'supports_trusted_certs': False,
        'supports_pcpus': False,
        'supports_accelerators': False,
        'supports_bfv_rescue': False,
        'supports_vtpm': False,
        'supports_secure_boot': False,
        'supports_socket_pci_numa_affinity': False,
        'supports_remote_managed_ports': False,
        'supports_address_space_passthrough': False,
        'supports_address_space_emulated': False,
        'supports_virtio_fs': False,
        'supports_mem_backing_file': False,
        'supports_ephemeral_encryption': False,
        'supports_ephemeral_encryption_luks': False,
        'supports_ephemeral_encryption_plain': False,
        # Disk images are cached as Glance serves them and booted through
        # a qcow2 overlay: raw and qcow2 only.
        'supports_image_type_aki': False,
        'supports_image_type_ami': False,
        'supports_image_type_ari': False,
        'supports_image_type_iso': False,
        'supports_image_type_qcow2': True,
        'supports_image_type_raw': True,
        'supports_image_type_vdi': False,
        'supports_image_type_vhd': False,
        'supports_image_type_vhdx': False,
        'supports_image_type_vmdk': False,
        'supports_image_type_ploop': False,
    }

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
        self.virt_type = None

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

    def _disk_gb(self):
        st = os.statvfs(self.instances_path)
        total = st.f_blocks * st.f_frsize // units.Gi
        free = st.f_bavail * st.f_frsize // units.Gi
        return total, free

    def _guests(self):
        return self.host.list_guests(CONF.host)

    def _running_count(self):
        return sum(1 for g in self._guests() if g.active_info() is not None)

    def _host_cpu_info(self):
        arch, memory_mb, cpus = self.host.node_info()[:3]
        return arch, memory_mb, cpus

    def get_available_resource(self, nodename):
        arch, memory_mb, cpus = self._host_cpu_info()
        total_gb, free_gb = self._disk_gb()
        vcpus_used = mem_used = 0
        for guest in self._guests():
            info = guest.active_info()
            if info is not None:
                vcpus_used += info.vcpus
                mem_used += (info.max_mem_kib // 1024 +
                             CONF['clear'].memory_overhead_mb)
        libvirt_ver, qemu_ver = self.host.version()
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
            'uuid': nova.virt.node.get_local_node_uuid(),
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

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        _arch, memory_mb, cpus = self._host_cpu_info()
        total_gb, _free = self._disk_gb()
        inventory = provider_tree.data(nodename).inventory
        ratios = self._get_allocation_ratios(inventory)
        # Each running Clear Container costs its QEMU process on top of the
        # flavor's memory: reserve it so placement does not overcommit.
        mem_reserved = (CONF.reserved_host_memory_mb +
                        CONF['clear'].memory_overhead_mb *
                        self._running_count())
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
                'reserved': min(self._get_reserved_host_disk_gb_from_config(),
                                total_gb),
            }
        provider_tree.update_inventory(nodename, result)
        traits = {TRAIT_CLEAR_CONTAINERS}
        traits.update(t for t, supported in
                      self.capabilities_as_traits().items() if supported)
        provider_tree.add_traits(nodename, *sorted(traits))

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

    def _boot_config(self, instance, files, network_info=None,
                     interfaces=None):
        assets = self.assets.load()
        rootfs = files.rootfs_ref()
        return domain.BootConfig(
            virt_type=self.virt_type or (
                CONF['clear'].virt_type if CONF['clear'].virt_type != 'auto'
                else 'qemu'),
            machine_type=CONF['clear'].machine_type,
            kernel=assets.kernel,
            initrd=assets.initrd,
            acpi=assets.acpi,
            disk_path=rootfs or files.disk,
            disk_format='raw' if rootfs else 'qcow2',
            upper_disk_path=files.upper if rootfs else None,
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
        boot = self._boot_config(instance, files, network_info, interfaces)
        try:
            guest_network.check_length(
                domain.kernel_cmdline(instance, image_meta, boot))
        except guest_network.CommandLineTooLong as e:
            raise clear_exc.PortNotPluggable(name=instance.name, reason=e)
        xml = domain.domain_xml(instance, instance.flavor, image_meta, boot)
        files.write_domain_xml(xml)
        return self.host.define(xml)

    def _start_plugged(self, instance, guest, network_info):
        """Start the guest once Neutron reports its ports up.

        As nova's libvirt driver does: os-vif plugs the ports it has a
        plugin for (OVS), the domain starts paused (libvirt creates the
        macvtap or tap devices, the host's Neutron agent sees them and
        reports the ports up, Neutron tells Nova), and runs once every
        ``network-vif-plugged`` event arrived, so the workload never starts
        on a port that does not pass traffic yet.
        """
        timeout = CONF.vif_plugging_timeout
        events = clear_vif.plug_events(network_info) if timeout else []
        if not events:
            vif_plug.plug(instance, network_info)
            guest.launch()
            return

        def failed(event_name, instance):
            LOG.error('Neutron reported a failure for %s', event_name,
                      instance=instance)
            if CONF.vif_plugging_is_fatal:
                raise clear_exc.VifPlugFailed(name=instance.name,
                                              event=event_name)

        t0 = time.monotonic()
        try:
            with self.virtapi.wait_for_instance_event(
                    instance, events, timeout=timeout,
                    error_callback=failed):
                # os-vif creates OVS ports here: the agent may report them
                # up at once, so inside the wait.
                vif_plug.plug(instance, network_info)
                guest.launch(pause=True)
        except exception.InstanceEventTimeout:
            if CONF.vif_plugging_is_fatal:
                raise clear_exc.VifPlugTimeout(
                    name=instance.name, timeout=timeout, host=CONF.host,
                    ports=', '.join(tag for _name, tag in events))
            LOG.warning('Ports not reported up within %ds; starting the '
                        'guest anyway (vif_plugging_is_fatal=False)',
                        timeout, instance=instance)
        LOG.debug('Ports reported up after %.2fs', time.monotonic() - t0,
                  instance=instance)
        guest.resume()

    def _ensure_disk(self, context, instance, image_meta, files):
        """The instance's disks: an overlay on a cached disk image, or a
        container image's shared root filesystem plus a writable disk.

        Each cache records the instance's reference under its lock
        (``claim``), so manage_image_cache never removes what a spawn in
        progress is about to use.
        """
        if files.has_disks():
            self._ensure_rootfs(context, instance, image_meta, files)
            return
        if not image_meta.obj_attr_is_set('id'):
            raise exception.InstanceDeployFailure(
                reason=_('Clear Containers boot from an image; this '
                         'instance has none (boot from volume is not '
                         'supported)'))
        cached = self.image_cache.get(
            context, image_meta,
            claim=lambda c: files.write_image_ref(c.image_id))
        root_gb = instance.flavor.root_gb
        if not container.is_container(image_meta, cached):
            disk_images.create_overlay(cached, files.disk, root_gb)
            return
        rootfs = self.rootfs_cache.get(
            cached, root_gb * units.Gi if root_gb else None,
            claim=lambda r: files.write_rootfs_ref(r.path))
        props = self._image_properties(context, image_meta)
        wl = workload.resolve(rootfs.config, props, str(image_meta.id))
        container.create_writable_disk(
            files.upper, root_gb, wl,
            authorized_keys=(instance.key_data
                             if instance.obj_attr_is_set('key_data')
                             else None))

    def _ensure_rootfs(self, context, instance, image_meta, files):
        """Rebuild a container instance's shared root filesystem when it
        was lost from the cache (removed by hand, cache wiped): from the
        instance's image, through the caches, with the same digest."""
        ref = files.rootfs_ref()
        if ref is None or os.path.exists(ref):
            return
        expected = container.digest_of(ref)
        LOG.warning('The root filesystem %(r)s is no longer in the cache; '
                    'rebuilding it from image %(i)s',
                    {'r': ref, 'i': instance.image_ref}, instance=instance)
        if not image_meta.obj_attr_is_set('id'):
            raise exception.InstanceDeployFailure(
                reason=_('the root filesystem %s is lost and the instance '
                         'has no image to rebuild it from') % ref)

        def claim(rootfs):
            if rootfs.digest != expected:
                raise exception.InstanceDeployFailure(
                    reason=_('image %(i)s now unpacks to %(n)s, not %(o)s '
                             'the instance was created with') %
                    {'i': image_meta.id, 'n': rootfs.digest, 'o': expected})
            files.write_rootfs_ref(rootfs.path)
        cached = self.image_cache.get(
            context, image_meta,
            claim=lambda c: files.write_image_ref(c.image_id))
        # No size limit: the instance was created within its flavor.
        self.rootfs_cache.get(cached, None, claim=claim)

    @staticmethod
    def _ensure_config_drive(context, instance, injected_files,
                             admin_password, network_info, files):
        """Nova's own config drive, when the instance or policy wants one:
        cloud-init in disk images finds it by its label, the agent mounts it
        at /.nova-clear/config-drive for container workloads."""
        if not configdrive.required_by(instance) or \
                os.path.exists(files.config_drive):
            return
        extra_md = {'admin_pass': admin_password} if admin_password else {}
        inst_md = instance_metadata.InstanceMetadata(
            instance, content=injected_files, extra_md=extra_md,
            network_info=network_info)
        tmp = files.config_drive + '.tmp'
        with configdrive.ConfigDriveBuilder(instance_md=inst_md) as cdb:
            try:
                cdb.make_drive(tmp)
            except processutils.ProcessExecutionError as e:
                raise exception.InstanceDeployFailure(
                    reason=_('cannot build the config drive: %s') % e)
        os.replace(tmp, files.config_drive)
        configdrive.update_instance(instance)

    @staticmethod
    def _image_properties(context, image_meta):
        """All of the image's Glance properties (nova's ImageMeta keeps
        only the ones nova knows; the clear_* ones are ours)."""
        image = glance.API().get(context, str(image_meta.id))
        return {k: v for k, v in (image.get('properties') or {}).items()
                if k in workload.PROPS}

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        if driver.block_device_info_get_mapping(block_device_info):
            raise exception.InstanceDeployFailure(
                reason=_('volumes are not supported by Clear Containers'))
        # Refuse ports this host cannot plug before creating anything.
        interfaces = self._interfaces(instance, network_info)
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
                self._ensure_disk(context, instance, image_meta, files)
                self._ensure_config_drive(context, instance, injected_files,
                                          admin_password, network_info,
                                          files)
                guest = self._define(instance, image_meta, files,
                                     network_info, interfaces)
                if power_on:
                    self._start_plugged(instance, guest, network_info)
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
            return
        try:
            guest.destroy()
            guest.undefine()
        except clear_exc.GuestOperationFailed as e:
            LOG.warning('Could not remove domain: %s', e, instance=instance)

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

    # -- power --------------------------------------------------------------
    def _restart(self, context, instance, network_info, guest=None):
        """Stop (hard) and boot again from freshly generated XML.

        The ports stay bound and up: nothing to wait for from Neutron.
        """
        files = self._files(instance)
        guest = guest or self.host.find(instance.uuid)
        if guest is not None:
            guest.destroy()
            if guest.has_managed_save():
                # A reboot boots afresh, it does not resume saved memory.
                guest.remove_managed_save()
        image_meta = objects.ImageMeta.from_instance(instance)
        self._ensure_disk(context, instance, image_meta, files)
        guest = self._define(instance, image_meta, files, network_info)
        self._replug(instance, network_info)
        guest.launch()

    @staticmethod
    def _replug(instance, network_info):
        """Unplug and plug the os-vif ports of a stopped domain, as nova's
        libvirt driver does on hard reboot and power on: a host reboot
        lost them, and Open vSwitch's userspace datapath does not notice
        that the tap libvirt deletes on stop comes back under the same
        name on start (the port passes no traffic until re-added)."""
        vif_plug.unplug(instance, network_info)
        vif_plug.plug(instance, network_info)

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        with _instance_lock(instance):
            guest = self.host.lookup(instance.uuid)
            if reboot_type == 'SOFT' and guest.is_active():
                try:
                    guest.shutdown()
                except clear_exc.GuestOperationFailed as e:
                    LOG.warning('Soft reboot: shutdown request failed: %s',
                                e, instance=instance)
                else:
                    if guest.wait_for_shutoff(
                            CONF['clear'].soft_reboot_timeout):
                        self._replug(instance, network_info)
                        guest.launch()
                        LOG.info('Soft reboot done', instance=instance)
                        return
                LOG.warning('Guest did not shut down within %ds; hard '
                            'reboot', CONF['clear'].soft_reboot_timeout,
                            instance=instance)
            self._restart(context, instance, network_info, guest)
            LOG.info('Hard reboot done', instance=instance)

    def power_off(self, instance, timeout=0, retry_interval=0):
        with _instance_lock(instance):
            guest = self.host.lookup(instance.uuid)
            if timeout and guest.is_active():
                deadline = time.monotonic() + timeout
                interval = retry_interval or timeout
                while time.monotonic() < deadline:
                    try:
                        guest.shutdown()
                    except clear_exc.GuestOperationFailed:
                        break  # shut down meanwhile, or no ACPI
                    if guest.wait_for_shutoff(
                            min(interval,
                                max(0, deadline - time.monotonic()))):
                        LOG.info('Clear Container shut down cleanly',
                                 instance=instance)
                        return
                LOG.warning('Clear Container did not shut down within %ds; '
                            'forcing it off', timeout, instance=instance)
            guest.destroy()

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        with _instance_lock(instance):
            guest = self.host.lookup(instance.uuid)
            if guest.is_active():
                return
            self._restart(context, instance, network_info, guest)

    def pause(self, instance):
        with _instance_lock(instance):
            self.host.lookup(instance.uuid).pause()

    def unpause(self, instance):
        with _instance_lock(instance):
            self.host.lookup(instance.uuid).resume()

    def suspend(self, context, instance):
        """Save the guest's memory to disk (libvirt managed save)."""
        with _instance_lock(instance):
            self.host.lookup(instance.uuid).managed_save()

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        with _instance_lock(instance):
            guest = self.host.lookup(instance.uuid)
            if guest.is_active():
                return
            self._replug(instance, network_info)
            guest.launch()

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  share_info, block_device_info=None):
        with _instance_lock(instance):
            guest = self.host.find(instance.uuid)
            if guest is None or not guest.is_active():
                self._restart(context, instance, network_info, guest)

    # -- image cache ----------------------------------------------------------
    def manage_image_cache(self, context, all_instances):
        """Nova's periodic image cache pass ([image_cache] options)."""
        if not CONF.image_cache.remove_unused_base_images:
            return
        min_age = CONF.image_cache.remove_unused_original_minimum_age_seconds
        listed = {inst.image_ref for inst in all_instances
                  if inst.image_ref}

        # Called again under each candidate's lock: what the instance
        # directories refer to now, spawns in progress included.
        def local_files():
            names = os.listdir(self.instances_path) \
                if os.path.isdir(self.instances_path) else []
            return [storage.InstanceFiles(self.instances_path, name)
                    for name in names
                    if uuidutils.is_uuid_like(name)]  # not _clear_base...

        def images_in_use():
            return listed | {ref for ref in (f.image_ref()
                                             for f in local_files()) if ref}

        def rootfs_in_use():
            return {ref for ref in (f.rootfs_ref() for f in local_files())
                    if ref}
        self.image_cache.remove_unused(images_in_use, min_age)
        self.rootfs_cache.remove_unused(rootfs_in_use, min_age)

    # -- console --------------------------------------------------------------
    def get_console_output(self, context, instance):
        files = self._files(instance)
        if self.host.find(instance.uuid) is None and not files.exists():
            raise exception.ConsoleNotAvailable()
        return files.console_tail(CONF['clear'].console_log_max_bytes)

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
