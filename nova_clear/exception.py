"""The errors nova-clear raises to Nova.

Each is a ``nova.exception`` subclass with a ``msg_fmt`` whose fields are
keyword arguments (nova's convention), so Nova records the message as the
instance fault.  Not here: errors that stay inside a module (converted
to one of these at its boundary), the asset builders' error
(:class:`nova_clear.buildtools.errors.BuildError`) and the host OS
tooling's (:mod:`nova_clear.hostos.errors`).
"""

from nova import exception

from nova_clear.i18n import _


# -- the host and the guest assets ---------------------------------------
class LibvirtUnavailable(exception.HypervisorUnavailable):
    msg_fmt = _('Cannot reach libvirt at %(uri)s: %(reason)s')


class GuestAssetsInvalid(exception.NovaException):
    msg_fmt = _('Clear Container guest assets in %(path)s are unusable: '
                '%(reason)s. Build them with: %(hint)s')


# -- images (ImageUnacceptable: the fault names the image) ----------------
class InvalidContainerImage(exception.ImageUnacceptable):
    """A container archive that is not a valid docker-archive or OCI
    image layout (:mod:`nova_clear.images.oci`)."""
    msg_fmt = _('Image %(image_id)s is unacceptable: not a valid container '
                'image: %(reason)s')


class LayerRefused(exception.ImageUnacceptable):
    """A layer member the rules refuse (:mod:`nova_clear.images.tarstream`,
    :mod:`nova_clear.images.layers`)."""
    msg_fmt = _('Image %(image_id)s is unacceptable: layer %(layer)s, '
                'member %(member)s: %(reason)s')


class InvalidWorkload(exception.ImageUnacceptable):
    """What the image config and properties say to run is unusable
    (:mod:`nova_clear.images.workload`)."""
    msg_fmt = _('Image %(image_id)s is unacceptable: %(reason)s')


# -- starting an instance -------------------------------------------------
class ClearContainerStartFailed(exception.InstanceDeployFailure):
    msg_fmt = _('Clear Container %(name)s did not start: %(reason)s')


class GuestOperationFailed(exception.NovaException):
    msg_fmt = _('libvirt could not %(action)s Clear Container %(name)s: '
                '%(reason)s')


class InvalidFlavorDiskQuota(exception.InstanceDeployFailure):
    """quota:disk_* extra specs QEMU cannot apply (nova_clear.domain)."""
    msg_fmt = _('The disk I/O limits (quota:disk_*) of flavor %(flavor)s '
                'are unusable: %(reason)s')


class LocalDiskFailed(exception.InstanceDeployFailure):
    """An ephemeral or swap disk could not be made
    (nova_clear.local_disks)."""
    msg_fmt = _('Cannot create the %(disk)s: %(reason)s')


class PortNotPluggable(exception.InstanceDeployFailure):
    msg_fmt = _('Cannot plug the network ports of %(name)s: %(reason)s')


class VifPlugTimeout(exception.InstanceDeployFailure):
    msg_fmt = _('Neutron did not report port(s) %(ports)s of %(name)s up '
                'within %(timeout)ds (vif_plugging_timeout); is the Neutron '
                'agent of host %(host)s running?')


class VifPlugFailed(exception.InstanceDeployFailure):
    msg_fmt = _('Neutron reported a failure plugging a port of %(name)s '
                '(%(event)s)')
