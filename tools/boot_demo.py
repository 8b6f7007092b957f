"""Boot Clear Containers through ClearDriver on this host and time them.

The README's main job until the all-in-one deployment lands: real libvirtd,
real QEMU, real guest assets, real nova.objects; a local disk image stands
in for Glance (downloaded through nova's Glance API code path).

For each run it measures ``spawn()`` called -> the agent's readiness line
``nova-clear: ready <uuid>`` in the console log, and (``--compare-qemu``)
the floor: ``qemu-system-x86_64`` started directly with the same kernel,
initramfs, command line and disk -> the same line.  Results go to JSON.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import fixtures  # noqa: E402

import nova.conf  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402
from nova import utils as nova_utils  # noqa: E402
from nova.virt import fake as fake_virt  # noqa: E402

from nova_clear import domain  # noqa: E402
from nova_clear import driver as clear_driver  # noqa: E402
from nova_clear.guest import build  # noqa: E402
from nova_clear import privsep as clear_privsep  # noqa: E402
from tests.functional import base as ft_base  # noqa: E402
from tests.functional import images  # noqa: E402

CONF = nova.conf.CONF


def wait_for(predicate, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def qemu_floor(assets, image_path, workdir, virt_type, cmdline):
    """Direct QEMU, same kernel/initrd/cmdline/disk -> readiness line."""
    log = os.path.join(workdir, 'qemu-floor.log')
    disk = os.path.join(workdir, 'qemu-floor.qcow2')
    if os.path.exists(log):
        os.unlink(log)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    image_path, '-F', 'raw', disk, '1G'], check=True)
    accel = 'kvm' if virt_type == 'kvm' else 'tcg,tb-size=32'
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ['qemu-system-x86_64', '-M', 'microvm,acpi=on', '-accel', accel,
         '-m', '128', '-smp', '1', '-nodefaults', '-no-user-config',
         '-nographic', '-serial', 'file:%s' % log,
         '-kernel', assets.kernel, '-initrd', assets.initrd,
         '-append', cmdline,
         '-drive', 'id=d0,file=%s,format=qcow2,if=none' % disk,
         '-device', 'virtio-blk-device,drive=d0'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ok = wait_for(lambda: os.path.exists(log) and
                      b'nova-clear: ready' in open(log, 'rb').read(), 120)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
        os.unlink(disk)
    return elapsed if ok else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--virt-type', default='auto',
                        choices=['auto', 'kvm', 'qemu'])
    parser.add_argument('--compare-qemu', action='store_true')
    parser.add_argument('--assets', default='/var/lib/nova-clear/guest')
    parser.add_argument('--json', default=os.path.join(
        ROOT, 'bench-results', 'boot-demo.json'))
    args = parser.parse_args()

    objects.register_all()
    CONF([], project='nova', default_config_files=[])
    work = tempfile.mkdtemp(prefix='nova-clear-demo-', dir='/var/tmp')
    os.chmod(work, 0o755)
    t_build = time.monotonic()
    if not os.path.exists(os.path.join(args.assets, 'manifest.json')):
        print('building guest assets into %s' % args.assets)
        build.build(args.assets)
    t_build = time.monotonic() - t_build
    CONF.set_override('assets_path', args.assets, group='clear')
    CONF.set_override('virt_type', args.virt_type, group='clear')
    CONF.set_override('instances_path', os.path.join(work, 'instances'),
                      group='clear')
    CONF.set_override('image_cache_path', os.path.join(work, 'cache'),
                      group='clear')
    CONF.set_override('state_path', work)
    CONF.set_override('lock_path', os.path.join(work, 'locks'),
                      group='oslo_concurrency')
    helper = clear_privsep.local_helper_command(work,
                                                os.path.join(work, 'cache'))
    CONF.set_override('helper_command', helper, group='nova_sys_admin')
    CONF.set_override('helper_command', helper, group='clear_sys_admin')

    glance = ft_base.LocalGlance()
    patches = [fixtures.MonkeyPatch(
        'nova.image.glance.get_default_image_service', lambda: glance),
        fixtures.MonkeyPatch(
            'nova.image.glance.API.get_remote_image_service',
            lambda self_, ctx, href: (glance, href))]
    for p in patches:
        p.setUp()
    image_path = images.disk_image('fs')
    image_id = glance.add(image_path, 'raw')
    ctx = nova_context.RequestContext('demo', 'demo', is_admin=True)

    t0 = time.monotonic()
    drv = clear_driver.ClearDriver(fake_virt.FakeVirtAPI())
    drv.init_host(CONF.host)
    t_init = time.monotonic() - t0
    print('driver ready in %.2fs: virt_type=%s (asked: %s), machine=%s'
          % (t_init, drv.virt_type, args.virt_type,
             CONF['clear'].machine_type))

    runs = []
    for i in range(args.repeat):
        flavor = objects.Flavor(id=1, flavorid='c1', name='clear.tiny',
                                memory_mb=128, vcpus=1, root_gb=1,
                                ephemeral_gb=0, swap=0, extra_specs={})
        inst = objects.Instance(
            context=ctx, id=i + 1, uuid=str(uuid.uuid4()),
            hostname='demo-%d' % (i + 1), display_name='demo-%d' % (i + 1),
            project_id='demo', user_id='demo', image_ref=image_id,
            flavor=flavor, vcpus=1, memory_mb=128, root_gb=1,
            config_drive='', launched_at=None,
            system_metadata=nova_utils.get_system_metadata_from_image(
                glance.show(None, image_id)))
        needle = b'nova-clear: ready %s' % inst.uuid.encode()
        t0 = time.monotonic()
        drv.spawn(ctx, inst, glance.image_meta(image_id), [], None, {})
        t_spawn = time.monotonic() - t0
        ok = wait_for(lambda: needle in drv.get_console_output(ctx, inst),
                      180)
        t_ready = time.monotonic() - t0
        wait_for(lambda: b'disk-init: up' in
                 drv.get_console_output(ctx, inst), 30)
        console = drv.get_console_output(ctx, inst).decode('utf-8',
                                                           'replace')
        t0 = time.monotonic()
        drv.destroy(ctx, inst, None)
        t_destroy = time.monotonic() - t0
        if not ok:
            print(console)
            print('FAILED: no readiness line within 180 s')
            return 1
        if i == 0:
            print('--- console of %s ---' % inst.uuid)
            print(console.rstrip())
            print('--- end of console ---')
        run = {'spawn_returned_s': round(t_spawn, 3),
               'spawn_to_ready_s': round(t_ready, 3),
               'destroy_s': round(t_destroy, 3)}
        if args.compare_qemu:
            assets = drv.assets.load()
            boot = drv._boot_config(inst, drv._files(inst))
            cmdline = domain.kernel_cmdline(inst, glance.image_meta(image_id),
                                            boot)
            run['raw_qemu_to_ready_s'] = round(qemu_floor(
                assets, image_path, work, drv.virt_type, cmdline), 3)
        runs.append(run)
        print('run %d: %s' % (i + 1, run))

    summary = {k: {'median': round(statistics.median(r[k] for r in runs), 3),
                   'min': min(r[k] for r in runs),
                   'max': max(r[k] for r in runs)}
               for k in runs[0]}
    result = {'virt_type': drv.virt_type, 'machine': 'microvm',
              'kernel': drv.assets.load().kernel_release,
              'driver_init_s': round(t_init, 3),
              'assets_build_s': round(t_build, 3),
              'runs': runs, 'summary': summary}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=2)
    print('timings (s, %d run%s, median [min-max]):' %
          (len(runs), '' if len(runs) == 1 else 's'))
    for k, v in summary.items():
        print('  %-22s %.2f [%.2f-%.2f]' % (
            k, v['median'], v['min'], v['max']))
    if 'raw_qemu_to_ready_s' in summary:
        print('  driver/raw-QEMU ratio  %.2f' % (
            summary['spawn_to_ready_s']['median'] /
            summary['raw_qemu_to_ready_s']['median']))
    print('wrote %s' % args.json)
    for p in patches:
        p.cleanUp()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
