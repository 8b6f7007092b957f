"""``tools/devstack-check``: devstack's own ``stack.sh`` with
``enable_plugin nova-clear``, run on this machine inside a fresh Debian 12
"machine" (a root file system, a network namespace, a PID namespace), then
Clear Containers booted through it and the Zuul job's tempest selection.
See doc/source/devstack.rst."""
