"""The subcommands of ``tools/allinone`` (which installs the packages and
the venv first, then runs ``python -m tools.aio``): ``up`` (start +
bootstrap + demo boot), ``start`` (no demo), ``boot`` (the demo),
``status``, ``restart SERVICE..``, ``stop``; ``up``/``start`` take
``--computes 1|2``,
``tempest [--smoke|--general-purpose|REGEX]``."""

import argparse
import os
import pwd
import sys
import time

from tools.aio import demo
from tools.aio import hostnet
from tools.aio import process
from tools.aio import services
from tools.aio import settings
from tools.aio import stack


def cmd_up(args):
    t0 = float(os.environ.get('AIO_T0') or time.time())
    settings.COMPUTES = args.computes
    stack.up()
    if args.command != 'up':
        return None
    process.say('demo: a Clear Container through openstack server create')
    summary = demo.run(args.repeat, cli=True)
    if os.environ.get('AIO_T0'):
        process.say('from "tools/allinone up" to the first ACTIVE server: '
                    '%.0fs, to the end: %.0fs' % (
                        summary['runs'][0]['active_at'] - t0,
                        time.time() - t0))
    print('\nReady.  . %s; openstack server list' % settings.ADMIN_OPENRC)
    return None


def cmd_boot(args):
    demo.run(args.repeat, args.keep, args.cli, network=not args.nic_none)


def cmd_tempest(args):
    from tools.aio import tempest
    if args.general_purpose or args.smoke:
        from tools.aio import tempest_gp
        return 0 if tempest_gp.run(
            args.concurrency,
            extra=tempest.SMOKE if args.smoke else None) else 1
    summary = tempest.run(args.regex, args.smoke, args.concurrency,
                          args.machine_type, exclude=args.exclude)
    return 0 if summary['passed'] and not summary['failed'] else 1


def cmd_status(args):
    ok = True
    for svc in services.ORDER:
        wanted = getattr(svc, 'wanted', lambda: True)()
        for name in svc.PROCESSES:
            pid = process.running_pid(name)
            if not wanted and not pid:
                continue
            port = svc.PORTS.get(name)
            extra = ''
            if port:
                extra = ' port %d %s' % (port, 'open' if process.port_open(
                    port) else 'closed')
            if pid:
                try:
                    extra += ' as %s' % pwd.getpwuid(
                        process.owner(pid)).pw_name
                except (OSError, KeyError):
                    pass
            print('%-24s %s%s' % (name, 'running pid %d' % pid if pid
                                  else 'stopped', extra))
            ok = ok and bool(pid)
    problem = hostnet.problem()
    print('%-24s %s' % ('provider-net', problem or hostnet.describe()))
    print('logs: %s' % settings.LOGS)
    return 0 if ok and not problem else 3


def cmd_stop(args):
    stack.stop()


def cmd_restart(args):
    known = services.processes()
    for name in args.services:
        if name not in known:
            raise process.Failure('unknown service %r (known: %s)'
                                  % (name, ', '.join(known)))
    from tools.aio.services import compute2
    for name in args.services:
        if name in ('libvirtd-2', 'virtlogd-2'):
            # detached daemons: stopped by their own pid files
            compute2.stop_daemons()
        else:
            process.stop(name)
    # start again with the same steps as "up" (idempotent), as many
    # compute hosts as before
    settings.COMPUTES = settings.computes()
    stack.up()


def parser():
    p = argparse.ArgumentParser(
        prog='tools/allinone',
        description='All-in-one OpenStack with nova-clear on one Debian 12 '
                    'machine.')
    sub = p.add_subparsers(dest='command')
    for name in ('up', 'start'):
        s = sub.add_parser(name)
        s.add_argument('--repeat', type=int, default=1,
                       help='demo boots (median reported)')
        s.add_argument('--computes', type=int, default=1, choices=(1, 2),
                       help='compute hosts: 2 adds a second one (its own '
                            'libvirtd, nova-compute and macvtap agent) '
                            'for migrations; 1 (default) stops it')
    s = sub.add_parser('boot')
    s.add_argument('--repeat', type=int, default=1)
    s.add_argument('--keep', action='store_true',
                   help='do not delete the demo servers')
    s.add_argument('--cli', action='store_true',
                   help='create the first server with "openstack server '
                        'create --wait" (timed at the API all the same)')
    s.add_argument('--nic-none', action='store_true',
                   help='boot without a port (default: on %s)'
                        % hostnet.NET.network)
    s = sub.add_parser('tempest', help='run tempest against the all-in-one')
    s.add_argument('regex', nargs='?',
                   help='tests to run (default: %s, without slow)'
                        % r'^tempest\.api\.compute\.')
    s.add_argument('--smoke', action='store_true',
                   help="the subset .ci/run runs (tools/run-tests): "
                        "--general-purpose plus more day-two tests")
    s.add_argument('--general-purpose', action='store_true',
                   help="the tests of nova's general-purpose features "
                        "(feature-matrix-gp.ini), microvm and q35 servers; "
                        "a verdict per feature")
    s.add_argument('--concurrency', type=int, default=2)
    s.add_argument('--exclude', metavar='REGEX',
                   help='tests not to run (tools/run-tests: known '
                        'failures, with their reason)')
    s.add_argument('--machine-type', default='microvm',
                   choices=('microvm', 'q35'),
                   help="the variant of tempest's servers (its flavors)")
    sub.add_parser('status')
    sub.add_parser('stop')
    s = sub.add_parser('restart')
    s.add_argument('services', nargs='+')
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    args.command = args.command or 'up'
    if not hasattr(args, 'repeat'):
        args.repeat = 1
    if os.geteuid() != 0:
        print('tools/allinone must run as root', file=sys.stderr)
        return 2
    os.makedirs(settings.LOGS, exist_ok=True)
    os.makedirs(settings.RUN, exist_ok=True)
    handler = {'up': cmd_up, 'start': cmd_up, 'boot': cmd_boot,
               'status': cmd_status, 'stop': cmd_stop,
               'tempest': cmd_tempest,
               'restart': cmd_restart}[args.command]
    try:
        rc = handler(args)
    except process.Failure as e:
        print('\n[allinone] FAILED: %s' % e, file=sys.stderr)
        if e.log:
            print('--- last lines of %s ---\n%s\n---'
                  % (e.log, process.tail(e.log)), file=sys.stderr)
        return 1
    return rc if isinstance(rc, int) else 0
