"""Boot Clear Containers through ClearDriver on this host and time them.

The README's main job until the all-in-one deployment lands: real libvirtd,
real QEMU, real guest assets, real nova.objects; the sample disk image
(nova_clear.samples) stands in for Glance, downloaded through nova's Glance
API code path (nova_clear.deploy.localboot).

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import nova.conf  # noqa: E402
from nova import context as nova_context  # noqa: E402

from nova_clear.deploy import localboot  # noqa: E402
from nova_clear import domain  # noqa: E402
from nova_clear.guest import build  # noqa: E402
from nova_clear import samples  # noqa: E402

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

    CONF([], project='nova', default_config_files=[])
    work = tempfile.mkdtemp(prefix='nova-clear-demo-', dir='/var/tmp')
    os.chmod(work, 0o755)
    t_build = time.monotonic()
    if not os.path.exists(os.path.join(args.assets, 'manifest.json')):
        print('building guest assets into %s' % args.assets)
        build.build(args.assets)
    t_build = time.monotonic() - t_build
    localboot.configure(work, args.assets, virt_type=args.virt_type)

    glance = localboot.LocalGlance()
    undo_glance = glance.install()
    image_path = samples.disk_image('fs')
    image_id = glance.add(image_path, 'raw')
    ctx = nova_context.RequestContext('demo', 'demo', is_admin=True)

    t0 = time.monotonic()
    drv = localboot.driver()
    t_init = time.monotonic() - t0
    print('driver ready in %.2fs: virt_type=%s (asked: %s), machine=%s'
          % (t_init, drv.virt_type, args.virt_type,
             CONF['clear'].machine_type))

    runs = []
    for i in range(args.repeat):
        inst = localboot.instance(ctx, glance.show(None, image_id), i + 1,
                                  'demo-%d' % (i + 1))
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
            boot = drv.boot_config(inst)
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
    undo_glance()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
