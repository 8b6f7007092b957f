"""Deployment helpers: nova.conf writing (the all-in-one and the devstack
plugin), local boots through the driver (the boot benchmarks), the
all-in-one seen from a client (the network benchmark)."""
