"""neutron-macvtap-agent for the all-in-one, with privsep in its worker.

Run with the all-in-one venv's interpreter and the agent's usual
arguments (``tools/allinone`` does).

neutron 29's macvtap agent makes its first privileged call (checking
``physical_interface_mappings``) in its main process, which starts a
privsep daemon and the client thread reading its replies.  oslo.service's
threading backend then forks the worker that runs the agent: the worker
inherits the client channel but not its reader thread, so its first
privileged call (listing devices for the agent id) waits forever and the
agent never reports to neutron.  After the fork, the worker forgets the
inherited channels; each privsep context starts its own daemon there on
first use (the main process keeps its idle one).
"""

import os
import sys
import threading


def _forget_privsep_channels():
    from oslo_privsep import priv_context
    for module in list(sys.modules.values()):
        if not getattr(module, '__name__', '').startswith('neutron.'):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, priv_context.PrivContext):
                value.channel = None
                value.start_lock = threading.Lock()


def main():
    os.register_at_fork(after_in_child=_forget_privsep_channels)
    from neutron.cmd.plugins import macvtap_neutron_agent
    sys.argv[0] = 'neutron-macvtap-agent'
    return macvtap_neutron_agent.main()


if __name__ == '__main__':
    sys.exit(main())
