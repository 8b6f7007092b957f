"""What the asset builders share: the guest's kernel and agent initramfs
(:mod:`nova_clear.guest.build`, :mod:`nova_clear.guest.kernel`) and the
host's boot initramfs (:mod:`nova_clear.hostos.initramfs`)."""
