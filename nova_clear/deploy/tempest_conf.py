"""What tempest is told about a cloud whose computes run ClearDriver.

The ``[compute-feature-enabled]`` flags are derived here, once, from what
the driver declares (``ClearDriver.capabilities``) and from which of Nova's
``ComputeDriver`` operations it implements (overrides), plus the few facts
of the deployment a driver cannot know (is the serial proxy running, how
many compute hosts).  ``tools/allinone tempest`` and the devstack plugin's
``test-config`` phase both use it, so nothing is listed by hand twice::

    nova-clear-tempest-flags [--serial-console] [--compute-nodes N]
                             [--machine-type microvm|q35]

prints ``section option value`` lines for devstack's ``iniset``.
"""

import argparse

# tempest flag -> the ComputeDriver methods the feature needs implemented
OPERATIONS = {
    'console_output': ('get_console_output',),
    'pause': ('pause', 'unpause'),
    'suspend': ('suspend', 'resume'),
    'snapshot': ('snapshot',),
    # nova's shelve: snapshot, power off (then destroy once offloaded);
    # unshelve: spawn from the snapshot
    'shelve': ('snapshot', 'power_off', 'destroy', 'spawn'),
    'rescue': ('rescue', 'unrescue'),
    # stable device rescue (hw_rescue_bus/device) lives in rescue(); see
    # STABLE_RESCUE_BUSES
    'stable_rescue': ('rescue', 'unrescue'),
    'resize': ('migrate_disk_and_power_off', 'finish_migration',
               'confirm_migration', 'finish_revert_migration'),
    # resize flavors: OS-DCF:diskConfig is tested through resize/rebuild
    'disk_config': ('migrate_disk_and_power_off', 'finish_migration'),
    'change_password': ('set_admin_password',),
    'vnc_console': ('get_vnc_console',),
    'spice_console': ('get_spice_console',),
    'serial_console': ('get_serial_console',),
    'interface_attach': ('attach_interface', 'detach_interface'),
    'swap_volume': ('swap_volume',),
    'live_migration': ('live_migration', 'pre_live_migration',
                       'post_live_migration_at_destination'),
    # personality files and config drives are written to the config drive
    'config_drive': ('spawn',),
    'personality': ('spawn',),
}
# tempest flag -> the capability it also needs
CAPABILITIES = {
    'interface_attach': 'supports_attach_interface',
    'volume_multiattach': 'supports_multiattach',
    'attach_encrypted_volume': 'supports_multiattach',  # no encryptors
    'vtpm_live_migration': 'supports_vtpm',
}
# the hw_rescue_bus values tempest's stable device rescue tests set (ide
# has its own flag): the flag claims them all
STABLE_RESCUE_BUSES = {'virtio', 'scsi', 'usb'}
# what the deployment decides, not the driver
NOT_DRIVER = {
    'metadata_service': False,  # no metadata agent on provider networks
    'ide_bus': False,  # microvm has no IDE
    'hostname_fqdn_sanitization': True,  # nova >= 2023.1 sanitizes
    'enable_instance_password': True,
}


def implements(driver_cls, method):
    """True when ``driver_cls`` overrides ComputeDriver.``method``."""
    from nova.virt import driver as nova_driver
    base = getattr(nova_driver.ComputeDriver, method)
    return getattr(driver_cls, method, base) is not base


def compute_features(driver_cls=None, serial_console=False,
                     compute_nodes=1, machine_type='microvm'):
    """``{tempest flag: bool}`` for ``[compute-feature-enabled]``.

    ``serial_console``: nova-serialproxy runs and ``[serial_console]
    enabled`` is set.  ``compute_nodes``: how many hosts run the driver.
    ``machine_type``: the variant of tempest's servers (its flavors'
    ``clear:machine_type``): only the q35 variant hot-plugs interfaces.
    """
    if driver_cls is None:
        from nova_clear.driver import ClearDriver as driver_cls
    caps = driver_cls.capabilities
    flags = dict(NOT_DRIVER)
    for flag, methods in OPERATIONS.items():
        flags[flag] = all(implements(driver_cls, m) for m in methods)
    for flag, cap in CAPABILITIES.items():
        flags[flag] = flags.get(flag, True) and bool(caps.get(cap))
    from nova_clear import domain_pci
    from nova_clear import rescue
    flags['interface_attach'] = (flags['interface_attach'] and
                                 domain_pci.supports_hotplug(machine_type))
    flags['stable_rescue'] = (flags['stable_rescue'] and
                              STABLE_RESCUE_BUSES <= set(rescue.STABLE_BUSES))
    flags['serial_console'] = flags['serial_console'] and serial_console
    # moving between hosts: only where there are two to move between
    moves = flags['resize'] and compute_nodes > 1
    flags['cold_migration'] = moves
    flags['shelve_migrate'] = moves and flags['shelve']
    flags['can_migrate_between_any_hosts'] = moves
    lm = flags['live_migration'] and compute_nodes > 1
    flags['live_migration'] = lm
    flags['live_migrate_back_and_forth'] = lm
    flags['block_migration_for_live_migration'] = lm
    flags['volume_backed_live_migration'] = lm
    return flags


def ini_lines(flags):
    """``compute-feature-enabled <flag> True|False`` lines, sorted."""
    return ['compute-feature-enabled %s %s' % (k, bool(v))
            for k, v in sorted(flags.items())]


def main(argv=None):
    p = argparse.ArgumentParser(
        prog='nova-clear-tempest-flags',
        description="tempest's [compute-feature-enabled] flags for a cloud "
                    'of Clear Containers, as "section option value" lines.')
    p.add_argument('--serial-console', action='store_true',
                   help='nova-serialproxy runs ([serial_console] enabled)')
    p.add_argument('--compute-nodes', type=int, default=1)
    p.add_argument('--machine-type', default='microvm',
                   help="the variant of tempest's flavors (microvm, q35)")
    args = p.parse_args(argv)
    for line in ini_lines(compute_features(
            serial_console=args.serial_console,
            compute_nodes=args.compute_nodes,
            machine_type=args.machine_type)):
        print(line)
    return 0
