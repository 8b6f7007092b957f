"""Starting a guest once Neutron reports its ports up.

As nova's libvirt driver does: os-vif plugs the ports it has a plugin for
(OVS), the domain starts paused (libvirt creates the macvtap or tap
devices, the host's Neutron agent sees them and reports the ports up,
Neutron tells Nova), and runs once every ``network-vif-plugged`` event
arrived, so the workload never starts on a port that does not pass traffic
yet.  Which events to wait for is :func:`nova_clear.vif.plug_events`.
"""

import time

from oslo_log import log as logging

from nova.compute import task_states
import nova.conf
from nova import exception

from nova_clear import exception as clear_exc
from nova_clear import vif as clear_vif
from nova_clear import vif_plug

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF


def is_rebuild(instance):
    """True while Nova's rebuild spawns the instance again (its default
    rebuild: destroy, then spawn with task_state rebuild_spawning)."""
    return (instance.obj_attr_is_set('task_state') and
            instance.task_state == task_states.REBUILD_SPAWNING)


def plug_and_launch(virtapi, instance, guest, network_info):
    """Plug the instance's ports and launch ``guest``; with ports Neutron
    still reports down, paused until their events arrived (or
    ``vif_plugging_timeout`` passed), then resumed.

    VifPlugFailed / VifPlugTimeout when ``vif_plugging_is_fatal``;
    ClearContainerStartFailed from the launch.
    """
    timeout = CONF.vif_plugging_timeout
    events = clear_vif.plug_events(
        network_info, rebuilding=is_rebuild(instance)) if timeout else []
    if not events:
        vif_plug.launch_plugged(instance, network_info, guest)
        return

    def failed(event_name, instance):
        LOG.error('Neutron reported a failure for %s', event_name,
                  instance=instance)
        if CONF.vif_plugging_is_fatal:
            raise clear_exc.VifPlugFailed(name=instance.name,
                                          event=event_name)

    t0 = time.monotonic()
    try:
        with virtapi.wait_for_instance_event(
                instance, events, timeout=timeout, error_callback=failed):
            # os-vif creates OVS ports here: the agent may report them up
            # at once, so inside the wait.
            vif_plug.launch_plugged(instance, network_info, guest,
                                    pause=True)
    except exception.InstanceEventTimeout:
        if CONF.vif_plugging_is_fatal:
            raise clear_exc.VifPlugTimeout(
                name=instance.name, timeout=timeout, host=CONF.host,
                ports=', '.join(tag for _name, tag in events))
        LOG.warning('Ports not reported up within %ds; starting the guest '
                    'anyway (vif_plugging_is_fatal=False)', timeout,
                    instance=instance)
    LOG.debug('Ports reported up after %.2fs', time.monotonic() - t0,
              instance=instance)
    guest.resume()
