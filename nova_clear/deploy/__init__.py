"""Deployment helpers shared by the all-in-one and the devstack plugin."""
