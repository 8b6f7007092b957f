"""The all-in-one deployer behind ``tools/allinone`` (devstack's shape).

``stack`` only orchestrates: every service module under ``services``
has the same contract (``configure``, ``init``, ``start``, ``wait``,
``stop``) and ``services.ORDER`` is the start order.  ``process`` runs
them (PID files, process groups, logs, restart on a changed
configuration), ``hostnet`` makes the provider network on the host,
``cloud`` the objects in the cloud (catalog, images, flavors, networks),
``demo`` the timed boots, ``cli`` the subcommands.  See
doc/source/allinone.rst, "Layout".
"""
