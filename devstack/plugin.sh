#!/bin/bash
# nova-clear devstack plugin: nova-compute runs every instance as a Clear
# Container (compute_driver = clear.ClearDriver).
#
#   stack pre-install   Debian packages (QEMU, busybox-static, e2fsprogs)
#   stack install       pip install of nova-clear (regular, not editable:
#                       its nova/virt/clear shim must land in nova's tree)
#   stack post-config   compute_driver and [clear] into $NOVA_CONF, through
#                       nova-clear-configure (the all-in-one's code too);
#                       with Q_AGENT=macvtap: the provider veth pair and
#                       the macvtap agent's settings
#   stack extra         guest kernel + agent initramfs, sample images,
#                       flavors; the provider network (Q_AGENT=macvtap)
#   stack test-config   tempest: images, flavors, feature flags
#   unstack             destroy leftover Clear Container domains; remove
#                       the provider veth pair and namespace
#   clean               remove the guest assets and the image cache
#
# Sourced by devstack with the phase as arguments; sourced without
# arguments it only defines the functions (the unit tests do that).
# shellcheck shell=bash

NOVA_CLEAR_XMLNS=${NOVA_CLEAR_XMLNS:-opendev.org/x/nova-clear/instance}

function nova_clear_bin {
    # nova-clear's console scripts, from nova's environment
    local name=$1
    if [[ -n ${NOVA_CLEAR_BIN_DIR:-} ]]; then
        echo "$NOVA_CLEAR_BIN_DIR/$name"
    elif [[ -n ${NOVA_BIN_DIR:-} && -x $NOVA_BIN_DIR/$name ]]; then
        echo "$NOVA_BIN_DIR/$name"
    else
        echo "$name"
    fi
}

# the admin cloud devstack writes into clouds.yaml
function nova_clear_openstack {
    openstack --os-cloud "${NOVA_CLEAR_OS_CLOUD:-devstack-admin}" "$@"
}

function install_nova_clear_packages {
    # buildah: the sample container image (nova-clear-sample-images)
    install_package qemu-system-x86 qemu-utils busybox-static e2fsprogs \
        buildah
}

function install_nova_clear {
    # A regular install, not setup_develop.  Devstack installs nova itself
    # from its git tree in develop mode, and nova loads drivers only from
    # nova.virt: nova-clear's nova/virt/clear shim in site-packages would
    # shadow nova's own package there ("cannot import name 'arch' from
    # 'nova.virt'"), so it is installed without the shim
    # (NOVA_CLEAR_NOVA_SHIM=no) and the shim is linked into nova's tree
    # (an untracked nova/virt/clear in $NOVA_DIR)
    NOVA_CLEAR_NOVA_SHIM=$NOVA_CLEAR_NOVA_SHIM pip_install "$NOVA_CLEAR_DIR"
    if [[ $NOVA_CLEAR_NOVA_SHIM == no ]]; then
        ln -sfn "$NOVA_CLEAR_DIR/nova/virt/clear" "$NOVA_DIR/nova/virt/clear"
    fi
}

# Write compute_driver and [clear] into a nova configuration file
# (default $NOVA_CONF; devstack copies it to $NOVA_CPU_CONF when it starts
# nova-compute).  nova-compute runs unprivileged as $STACK_USER: no
# helper_command is set, so nova's and nova-clear's privsep daemons
# ([nova_sys_admin], [clear_sys_admin]) start with oslo.privsep's default
# "sudo privsep-helper --config-file $NOVA_CPU_CONF ...", as devstack's own.
function configure_nova_clear {
    local conf=${1:-$NOVA_CONF}
    "$(nova_clear_bin nova-clear-configure)" --config-file "$conf" \
        --virt-type "$NOVA_CLEAR_VIRT_TYPE" \
        --kvm-probe-timeout "$NOVA_CLEAR_KVM_PROBE_TIMEOUT" \
        --assets-path "$NOVA_CLEAR_ASSETS"
}

function build_nova_clear_guest {
    if [[ ! -f $NOVA_CLEAR_ASSETS/manifest.json ]]; then
        sudo "$(nova_clear_bin nova-clear-build-guest)" \
            --dest "$NOVA_CLEAR_ASSETS" \
            --kernel-package "$NOVA_CLEAR_KERNEL_PACKAGE"
    fi
}

# Sample disk image: a bare ext4 filesystem with a static busybox whose
# /sbin/init prints "disk-init: up on <hostname>" and keeps running, as
# qcow2 (like devstack's cirros): snapshots and backups keep the image's
# format, and a raw one is the whole flavor disk, so tempest's three 1 GiB
# backups overran devstack's glance quota (GLANCE_LIMIT_IMAGE_SIZE_TOTAL,
# 2000 MiB) and the upload was cut off (502); built once into
# $NOVA_CLEAR_CACHE, its path printed.
function nova_clear_sample_image {
    sudo "$(nova_clear_bin nova-clear-sample-images)" \
        --cache "$NOVA_CLEAR_CACHE" disk qcow2
}

function create_nova_clear_images_and_flavors {
    local image command
    image=$(nova_clear_sample_image)
    if ! nova_clear_openstack image show "$NOVA_CLEAR_IMAGE" >/dev/null 2>&1; then
        nova_clear_openstack image create --public --disk-format qcow2 \
            --container-format bare --file "$image" "$NOVA_CLEAR_IMAGE"
    fi
    if ! nova_clear_openstack image show "$NOVA_CLEAR_IMAGE_EXIT" >/dev/null 2>&1; then
        nova_clear_openstack image create --public --disk-format qcow2 \
            --container-format bare --file "$image" \
            --property os_command_line='init=/bin/sh -- -c "echo hello from a Clear Container; exit 3"' \
            "$NOVA_CLEAR_IMAGE_EXIT"
    fi
    if ! nova_clear_openstack image show "$NOVA_CLEAR_IMAGE_CONTAINER" >/dev/null 2>&1; then
        # a container image (docker save format, busybox); as a service:
        # it says hello on the console and keeps running (its command is
        # the guest's shell's to expand, not ours)
        # shellcheck disable=SC2016
        command='["echo \"container says: $GREETING from $(pwd) as uid $(id -u)\"; exec sleep 2147483647"]'
        image=$(sudo "$(nova_clear_bin nova-clear-sample-images)" \
            --cache "$NOVA_CLEAR_CACHE" container docker)
        nova_clear_openstack image create --public --disk-format raw \
            --container-format docker --file "$image" \
            --property clear_user=root \
            --property clear_cmd="$command" \
            "$NOVA_CLEAR_IMAGE_CONTAINER"
    fi
    if ! nova_clear_openstack flavor show "$NOVA_CLEAR_FLAVOR" >/dev/null 2>&1; then
        nova_clear_openstack flavor create --ram 128 --vcpus 1 --disk 1 \
            "$NOVA_CLEAR_FLAVOR"
    fi
    if ! nova_clear_openstack flavor show "$NOVA_CLEAR_FLAVOR_TRAIT" >/dev/null 2>&1; then
        nova_clear_openstack flavor create --ram 192 --vcpus 1 --disk 1 \
            --property trait:CUSTOM_CLEAR_CONTAINERS=required \
            "$NOVA_CLEAR_FLAVOR_TRAIT"
    fi
}

# tempest: the images and flavors made in "stack extra", and the
# [compute-feature-enabled] flags derived from what the installed driver
# declares and implements (nova-clear-tempest-flags, the derivation
# tools/allinone tempest uses too); no guest SSH validation (no floating
# IPs on the provider network)
function configure_tempest_for_nova_clear {
    local conf=${1:-$TEMPEST_CONFIG}
    local image flavor flavor_alt section option value
    local flags_args=(--compute-nodes "${NOVA_CLEAR_COMPUTE_NODES:-1}")
    image=$(nova_clear_openstack image show -f value -c id "$NOVA_CLEAR_IMAGE")
    flavor=$(nova_clear_openstack flavor show -f value -c id "$NOVA_CLEAR_FLAVOR")
    flavor_alt=$(nova_clear_openstack flavor show -f value -c id "$NOVA_CLEAR_FLAVOR_TRAIT")
    iniset "$conf" compute image_ref "$image"
    # the exit image powers off by design: servers of image_ref_alt must
    # stay ACTIVE too
    iniset "$conf" compute image_ref_alt "$image"
    iniset "$conf" compute flavor_ref "$flavor"
    iniset "$conf" compute flavor_ref_alt "$flavor_alt"
    iniset "$conf" validation run_validation False
    if is_service_enabled n-sproxy; then
        flags_args+=(--serial-console)
    fi
    while read -r section option value; do
        iniset "$conf" "$section" "$option" "$value"
    done < <("$(nova_clear_bin nova-clear-tempest-flags)" "${flags_args[@]}")
}

# -- guest networking: Neutron ML2 macvtap + neutron-macvtap-agent ---------

# the L2 agent devstack runs (Q_AGENT, or NEUTRON_AGENT in newer devstack)
function nova_clear_uses_macvtap {
    [[ ${NEUTRON_AGENT:-${Q_AGENT:-}} == macvtap ]]
}

# The veth pair standing in for the provider network's wire, made by
# nova-clear-provider-net (nova_clear/deploy/provider_net.py, as
# tools/allinone makes it): $NOVA_CLEAR_MACVTAP_INTERFACE in the root
# namespace (up, no address), its peer with the gateway addresses in
# $NOVA_CLEAR_PROVIDER_NETNS; reused when it has that shape.
function nova_clear_provider_net {
    local action=$1
    shift
    local args=(--device "$NOVA_CLEAR_MACVTAP_INTERFACE"
        --peer "$NOVA_CLEAR_PROVIDER_PEER" --netns "$NOVA_CLEAR_PROVIDER_NETNS"
        --physnet "$NOVA_CLEAR_PHYSICAL_NETWORK"
        --cidr "$NOVA_CLEAR_NETWORK_CIDR" --gateway "$NOVA_CLEAR_NETWORK_GATEWAY")
    if [[ -n $NOVA_CLEAR_SUBNET6 ]]; then
        args+=(--cidr6 "$NOVA_CLEAR_NETWORK6_CIDR"
            --gateway6 "$NOVA_CLEAR_NETWORK6_GATEWAY")
    else
        args+=(--no-ipv6)
    fi
    sudo "$(nova_clear_bin nova-clear-provider-net)" "$action" "${args[@]}" "$@"
}

function nova_clear_provider_veth {
    nova_clear_provider_net up
}

# left in place while guests' macvtap devices still sit on it; unstack
# goes on when it fails
function nova_clear_remove_provider_veth {
    nova_clear_provider_net down ||
        echo "nova-clear: could not remove $NOVA_CLEAR_MACVTAP_INTERFACE" >&2
}

# The macvtap agent's settings, in the file devstack starts it with
# ($NEUTRON_CORE_PLUGIN_CONF, after $NEUTRON_CONF).  neutron's own devstack
# plugin (lib/macvtap_agent) sets firewall_driver = noop and AGENT_BINARY;
# AGENT_BINARY becomes nova-clear's launcher (tools/macvtap_agent.py),
# which keeps neutron 29's agent from hanging on privsep in its worker.
function configure_nova_clear_macvtap_agent {
    local conf=${1:-/$NEUTRON_CORE_PLUGIN_CONF}
    iniset "$conf" macvtap physical_interface_mappings \
        "$NOVA_CLEAR_PHYSICAL_NETWORK:$NOVA_CLEAR_MACVTAP_INTERFACE"
    iniset "$conf" securitygroup firewall_driver noop
    iniset "$conf" agent polling_interval 1
    # shellcheck disable=SC2034 # devstack's start_l2_agent runs it
    AGENT_BINARY="${NEUTRON_BIN_DIR:+$NEUTRON_BIN_DIR/}python3 $NOVA_CLEAR_DIR/tools/macvtap_agent.py"
}

function create_nova_clear_network {
    if ! nova_clear_openstack network show "$NOVA_CLEAR_NETWORK" >/dev/null 2>&1; then
        nova_clear_openstack network create --share \
            --provider-network-type flat \
            --provider-physical-network "$NOVA_CLEAR_PHYSICAL_NETWORK" \
            "$NOVA_CLEAR_NETWORK"
    fi
    # shellcheck disable=SC2153 # both set in devstack/settings
    if ! nova_clear_openstack subnet show "$NOVA_CLEAR_SUBNET" >/dev/null 2>&1; then
        nova_clear_openstack subnet create --network "$NOVA_CLEAR_NETWORK" \
            --subnet-range "$NOVA_CLEAR_NETWORK_CIDR" \
            --gateway "$NOVA_CLEAR_NETWORK_GATEWAY" \
            --allocation-pool "$NOVA_CLEAR_NETWORK_POOL" --no-dhcp \
            --dns-nameserver "$NOVA_CLEAR_NETWORK_GATEWAY" \
            "$NOVA_CLEAR_SUBNET"
    fi
    if [[ -n $NOVA_CLEAR_SUBNET6 ]] &&
            ! nova_clear_openstack subnet show "$NOVA_CLEAR_SUBNET6" >/dev/null 2>&1; then
        nova_clear_openstack subnet create --network "$NOVA_CLEAR_NETWORK" \
            --ip-version 6 --subnet-range "$NOVA_CLEAR_NETWORK6_CIDR" \
            --gateway "$NOVA_CLEAR_NETWORK6_GATEWAY" --no-dhcp \
            "$NOVA_CLEAR_SUBNET6"
    fi
}

# Clear Container domains left on this libvirtd after nova stopped
function cleanup_nova_clear_domains {
    local dom
    for dom in $(sudo virsh -c qemu:///system list --all --name); do
        if sudo virsh -c qemu:///system dumpxml "$dom" 2>/dev/null |
                grep -q "$NOVA_CLEAR_XMLNS"; then
            sudo virsh -c qemu:///system destroy "$dom" >/dev/null 2>&1 || true
            sudo virsh -c qemu:///system undefine --managed-save "$dom" \
                >/dev/null 2>&1 || true
        fi
    done
}

function cleanup_nova_clear {
    sudo rm -rf "$NOVA_CLEAR_ASSETS" "$NOVA_CLEAR_CACHE"
}

if [[ $# -gt 0 ]] && is_service_enabled n-cpu; then
    if [[ $1 == stack && $2 == pre-install ]]; then
        echo_summary "nova-clear: installing packages"
        install_nova_clear_packages
    elif [[ $1 == stack && $2 == install ]]; then
        echo_summary "nova-clear: installing nova-clear into nova's environment"
        install_nova_clear
    elif [[ $1 == stack && $2 == post-config ]]; then
        # the guest assets before nova-compute starts (its init_host
        # refuses to run without them)
        echo_summary "nova-clear: guest assets"
        build_nova_clear_guest
        echo_summary "nova-clear: compute_driver = clear.ClearDriver"
        configure_nova_clear "$NOVA_CONF"
        if nova_clear_uses_macvtap; then
            echo_summary "nova-clear: macvtap agent on $NOVA_CLEAR_MACVTAP_INTERFACE"
            if [[ $NOVA_CLEAR_PROVIDER_VETH == True ]]; then
                nova_clear_provider_veth
            fi
            configure_nova_clear_macvtap_agent "/$NEUTRON_CORE_PLUGIN_CONF"
        fi
    elif [[ $1 == stack && $2 == extra ]]; then
        echo_summary "nova-clear: sample images, flavors"
        create_nova_clear_images_and_flavors
        if nova_clear_uses_macvtap; then
            echo_summary "nova-clear: provider network $NOVA_CLEAR_NETWORK"
            create_nova_clear_network
        fi
    elif [[ $1 == stack && $2 == test-config ]]; then
        if is_service_enabled tempest; then
            echo_summary "nova-clear: configuring tempest"
            configure_tempest_for_nova_clear "$TEMPEST_CONFIG"
        fi
    fi
    if [[ $1 == unstack ]]; then
        cleanup_nova_clear_domains
        if nova_clear_uses_macvtap && [[ $NOVA_CLEAR_PROVIDER_VETH == True ]]; then
            nova_clear_remove_provider_veth
        fi
    fi
    if [[ $1 == clean ]]; then
        cleanup_nova_clear
    fi
fi
