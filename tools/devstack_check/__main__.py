"""tools/devstack-check [PHASE ...]: see doc/source/devstack.rst.

Phases, in order (default: all of them, on a fresh machine):
  prepare   the machine (a fresh Debian 12 root, namespaces), git
            repositories from PyPI sdists, devstack, local.conf
  stack     ./stack.sh as the stack user
  servers   a Clear Container from a disk image and one from a container
            image, with openstack server create; their console
  tempest   the Zuul job's tempest selection (tempest_test_regex)
  unstack   ./unstack.sh and ./clean.sh
  down      stop the machine (every process in it) and its network
Also: up (start the stopped machine again), shell (a root shell in it).
"""

import sys
import time

from tools.devstack_check import machine
from tools.devstack_check import phases

ORDER = ('prepare', 'stack', 'servers', 'tempest', 'unstack', 'down')
OTHER = ('up', 'shell')


def main(argv):
    names = argv or list(ORDER)
    unknown = [n for n in names if n not in ORDER + OTHER]
    if unknown or '-h' in names or '--help' in names:
        print(__doc__)
        return 0 if not unknown else 2
    times = []
    t_all = time.monotonic()
    failed = None
    for name in names:
        phases.say('phase %s' % name)
        t0 = time.monotonic()
        try:
            getattr(phases, name)()
        except (machine.Failure, phases.Failure) as e:
            failed = (name, str(e))
        times.append((name, time.monotonic() - t0))
        if failed:
            break
    print('\ndevstack-check phase times:')
    for name, seconds in times:
        print('  %-8s %7.1f s' % (name, seconds))
    print('  %-8s %7.1f s' % ('total', time.monotonic() - t_all))
    if failed:
        print('devstack-check: phase %s failed: %s' % failed)
        print('the machine is left as it is: tools/devstack-check shell '
              'to look inside, tools/devstack-check down to stop it')
        return 1
    print('devstack-check: %s: passed' % ' '.join(names))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
