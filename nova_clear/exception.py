"""Errors of nova-clear; each a nova.exception subclass so Nova records
its message as the instance fault."""

from nova import exception

from nova_clear.i18n import _


class LibvirtUnavailable(exception.HypervisorUnavailable):
    msg_fmt = _('Cannot reach libvirt at %(uri)s: %(reason)s')


class GuestAssetsInvalid(exception.NovaException):
    msg_fmt = _('Clear Container guest assets in %(path)s are unusable: '
                '%(reason)s. Build them with: %(hint)s')


class ClearContainerStartFailed(exception.InstanceDeployFailure):
    msg_fmt = _('Clear Container %(name)s did not start: %(reason)s')


class GuestOperationFailed(exception.NovaException):
    msg_fmt = _('libvirt could not %(action)s Clear Container %(name)s: '
                '%(reason)s')


class PortNotPluggable(exception.InstanceDeployFailure):
    msg_fmt = _('Cannot plug the network ports of %(name)s: %(reason)s')


class VifPlugTimeout(exception.InstanceDeployFailure):
    msg_fmt = _('Neutron did not report port(s) %(ports)s of %(name)s up '
                'within %(timeout)ds (vif_plugging_timeout); is the Neutron '
                'agent of host %(host)s running?')


class VifPlugFailed(exception.InstanceDeployFailure):
    msg_fmt = _('Neutron reported a failure plugging a port of %(name)s '
                '(%(event)s)')
