#!/bin/busybox sh
# clear-update boot initramfs: PID 1 before the host OS.
#
# Mounts the root disk, reads /boot/state (written by clear-update), picks
# the version to boot (lib/boot-state.sh, exactly like
# nova_clear.hostos.boot.choose), writes the state back atomically
# (decremented try counter, or the rollback) and switch_roots into
# /versions/<N>, with the whole disk at /sysroot.
#
# Kernel command line:
#   clear.root=DEV       root disk (default /dev/vda)
#   clear.rootfstype=T   its filesystem (default ext4)
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "clear-boot: $*" > /dev/console; }
die() { say "error: $*"; sync; poweroff -f; sleep 5; exit 1; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

ROOTDEV=/dev/vda FSTYPE=ext4
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        clear.root=*) ROOTDEV=${arg#*=} ;;
        clear.rootfstype=*) FSTYPE=${arg#*=} ;;
    esac
done

if [ -f /lib/modules/load-order ]; then
    while read -r mod; do
        [ -n "$mod" ] && insmod "/lib/modules/$mod" 2>/dev/null
    done < /lib/modules/load-order
fi
i=0
while [ ! -b "$ROOTDEV" ] && [ $i -lt 200 ]; do usleep 50000; i=$((i + 1)); done
mkdir -p /sysroot /newroot
mount -t "$FSTYPE" -o rw "$ROOTDEV" /sysroot || die "cannot mount $ROOTDEV"

. /lib/boot-state.sh
choose_boot /sysroot/boot/state || die "cannot use the boot state"

TREE=/sysroot/versions/$version
[ -d "$TREE" ] || die "snapshot $TREE missing"
say "booting version $version"
mount --bind "$TREE" /newroot || die "cannot bind $TREE"
if [ -d /newroot/sysroot ]; then
    mount --bind /sysroot /newroot/sysroot
fi
umount /proc /sys 2>/dev/null
exec switch_root /newroot /sbin/init
