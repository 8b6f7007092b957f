"""What ClearDriver declares to Nova (``ComputeDriver.capabilities``),
each flag with why."""

CAPABILITIES = {
    # manage_image_cache removes cached images and container root
    # filesystems no instance uses any more.
    'has_imagecache': True,
    # Evacuate: rebuild(evacuate=True) raises NotImplementedError, so
    # Nova's default rebuild spawns the instance at the destination, its
    # disks made anew from Glance through that host's caches (the base
    # image, or the container's root filesystem and a fresh writable
    # disk).  When the source's nova-compute comes back, Nova's
    # _destroy_evacuated_instances calls destroy(destroy_disks=True)
    # there: the domain (stopped: libvirt removes its macvtaps), the ports
    # and <uuid> (and a <uuid>_resize) go.  Tested against the fake
    # libvirt and on two real libvirtds (tests/functional).
    'supports_evacuate': True,
    # Resize and cold migration (nova_clear.migration) keep the original
    # in <uuid>_resize beside the new <uuid> and redefine the one domain,
    # so source and destination may be this host: the all-in-one resizes
    # with allow_resize_to_same_host = true.
    'supports_migrate_to_same_host': True,
    # Per variant (Nova checks this flag host-wide, and reports the trait
    # COMPUTE_NET_ATTACH_INTERFACE from it): the q35 variant hot-plugs
    # NICs into spare PCIe root ports; microvm has no bus that hot-plugs
    # and its instances get AttachInterfaceNotSupported naming the way to
    # the q35 variant (nova_clear.hotplug, nova_clear.domain_pci).
    'supports_attach_interface': True,
    'supports_device_tagging': False,
    'supports_tagged_attach_interface': False,
    'supports_tagged_attach_volume': False,
    'supports_extend_volume': False,
    'supports_multiattach': False,
    'supports_trusted_certs': False,
    'supports_pcpus': False,
    'supports_accelerators': False,
    'supports_bfv_rescue': False,
    'supports_vtpm': False,
    'supports_secure_boot': False,
    'supports_socket_pci_numa_affinity': False,
    'supports_remote_managed_ports': False,
    'supports_address_space_passthrough': False,
    'supports_address_space_emulated': False,
    'supports_virtio_fs': False,
    'supports_mem_backing_file': False,
    'supports_ephemeral_encryption': False,
    'supports_ephemeral_encryption_luks': False,
    'supports_ephemeral_encryption_plain': False,
    # Disk images are cached as Glance serves them and booted through
    # a qcow2 overlay: raw and qcow2 only.
    'supports_image_type_aki': False,
    'supports_image_type_ami': False,
    'supports_image_type_ari': False,
    'supports_image_type_iso': False,
    'supports_image_type_qcow2': True,
    'supports_image_type_raw': True,
    'supports_image_type_vdi': False,
    'supports_image_type_vhd': False,
    'supports_image_type_vhdx': False,
    'supports_image_type_vmdk': False,
    'supports_image_type_ploop': False,
}
