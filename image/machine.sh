#!/usr/bin/env bash
# The virtual machine every boot here runs on, sourced by image/boot (onebox's VM) and
# bench/boot/run (the stock image it is timed against), so that both boot on the same one.
# Harness settings, not the image's: a provider's machine and firmware are its own
# (bench/HISTORY.md, "The first seconds").
#
# machine FIRMWARE VARS DISK SEED NET0 NET1: sets the array `machine` to QEMU's arguments for
# - q35 under TCG (KVM hangs on the project's machines), 2 vCPUs, 2 GiB;
# - FIRMWARE uefi (OVMF; VARS: this VM's copy of its variables, made from OVMF's template when
#   missing, as a new VM's NVRAM) or bios (SeaBIOS, VARS unused);
# - the boot disk DISK (qcow2), and the read-only NoCloud seed SEED (none if empty);
# - two virtio NICs on the -netdev values NET0 and NET1 (ids n0 and n1), and virtio-rng.
# The NICs come without their option ROMs (romfile=): nothing boots from the network here, so
# the firmware need not load and start iPXE for each of them before GRUB. The disk is named as
# the one to boot (bootindex=0), as a provider's VM definition names it: OVMF then connects that
# disk and the consoles only, not every device, before it loads GRUB (about 1 s sooner under
# TCG; SeaBIOS the same either way). The disk keeps the PCI slot `if=virtio` gave it (addr=5),
# and the devices stay in this order: the guest names its NICs by slot (enp0s2 and enp0s3).
machine() {
  local firmware=$1 vars=$2 disk=$3 seed=$4 net0=$5 net1=$6
  machine=(-machine q35 -accel tcg -smp 2 -m 2048)
  if [[ $firmware == uefi ]]; then
    [[ -f $vars ]] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$vars"
    machine+=(-drive "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
      -drive "if=pflash,format=raw,file=$vars")
  fi
  machine+=(-drive "if=none,id=disk,format=qcow2,file=$disk,discard=unmap")
  [[ -n $seed ]] && machine+=(-drive "if=virtio,format=raw,readonly=on,file=$seed")
  # shellcheck disable=SC2054 # QEMU's options separate their values with commas
  machine+=(
    -netdev "$net0" -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=
    -netdev "$net1" -device virtio-net-pci,netdev=n1,mac=52:54:00:00:03:15,romfile=
    -device virtio-rng-pci -device virtio-blk-pci,drive=disk,addr=5,bootindex=0)
}
