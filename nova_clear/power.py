"""Power operations of ClearDriver: reboot (soft, then hard), power off
and on, pause, suspend (libvirt managed save), resume and the restart of
instances after a host reboot.  A mixin of :class:`nova_clear.driver.
ClearDriver`, whose ``host``, ``disks``, ``_files`` and ``_define`` it
uses; every operation holds the instance's lock."""

import time

from oslo_log import log as logging

import nova.conf
from nova import objects

from nova_clear import exception as clear_exc
from nova_clear import locking
from nova_clear import rescue
from nova_clear import vif_plug

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF


class PowerOperations:
    """Reboot, power off/on, pause, suspend and resume."""

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
        if rescue.is_rescued(files):
            guest = self.host.lookup(instance.uuid)  # boot the rescue again
        else:
            image_meta = objects.ImageMeta.from_instance(instance)
            self.disks.ensure(context, instance, image_meta, files)
            guest = self._define(instance, image_meta, files, network_info)
        self._relaunch(instance, network_info, guest)

    @staticmethod
    def _relaunch(instance, network_info, guest):
        """Launch a stopped domain with its os-vif ports unplugged and
        plugged again, as nova's libvirt driver does on hard reboot and
        power on: a host reboot lost them, and Open vSwitch's userspace
        datapath does not notice that the tap libvirt deletes on stop
        comes back under the same name on start (the port passes no
        traffic until re-added)."""
        vif_plug.unplug(instance, network_info)
        vif_plug.launch_plugged(instance, network_info, guest)

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        with locking.instance_lock(instance):
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
                        self._relaunch(instance, network_info, guest)
                        LOG.info('Soft reboot done', instance=instance)
                        return
                LOG.warning('Guest did not shut down within %ds; hard '
                            'reboot', CONF['clear'].soft_reboot_timeout,
                            instance=instance)
            self._restart(context, instance, network_info, guest)
            LOG.info('Hard reboot done', instance=instance)

    def power_off(self, instance, timeout=0, retry_interval=0):
        with locking.instance_lock(instance):
            self._power_off(instance, timeout, retry_interval)

    def _power_off(self, instance, timeout=0, retry_interval=0):
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
                        min(interval, max(0, deadline - time.monotonic()))):
                    LOG.info('Clear Container shut down cleanly',
                             instance=instance)
                    return
            LOG.warning('Clear Container did not shut down within %ds; '
                        'forcing it off', timeout, instance=instance)
        guest.destroy()

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        with locking.instance_lock(instance):
            guest = self.host.lookup(instance.uuid)
            if guest.is_active():
                return
            self._restart(context, instance, network_info, guest)

    def pause(self, instance):
        with locking.instance_lock(instance):
            self.host.lookup(instance.uuid).pause()

    def unpause(self, instance):
        with locking.instance_lock(instance):
            self.host.lookup(instance.uuid).resume()

    def suspend(self, context, instance):
        """Save the guest's memory to disk (libvirt managed save)."""
        with locking.instance_lock(instance):
            self.host.lookup(instance.uuid).managed_save()

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        with locking.instance_lock(instance):
            guest = self.host.lookup(instance.uuid)
            if guest.is_active():
                return
            self._relaunch(instance, network_info, guest)

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  share_info, block_device_info=None):
        with locking.instance_lock(instance):
            guest = self.host.find(instance.uuid)
            if guest is None or not guest.is_active():
                self._restart(context, instance, network_info, guest)
