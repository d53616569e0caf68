#!/usr/bin/env bash
# Sourced by image/build and bench/boot/stock-image: a root tree made into a disk that boots with
# UEFI and legacy BIOS, without mounting anything (the build host has no vfat and no systemd as
# PID 1): filesystems as files (mkfs.ext4 -d, mkfs.vfat -C + mtools), GRUB for x86_64-efi (on the
# ESP) and i386-pc (in the BIOS boot partition, with boot.img in the MBR, patched by hand as
# grub-bios-setup would), the GPT written by sfdisk. Both GRUBs find the root filesystem by UUID
# and read /boot/grub/grub.cfg from it (the tree's).

# Disk layout, in MiB: BIOS boot partition at 1, ESP after it, root to the end of the disk.
DISK_MIB=2048 DISK_BIOS_MIB=1 DISK_ESP_MIB=64
DISK_ROOT_MIB=$((DISK_MIB - 1 - DISK_BIOS_MIB - DISK_ESP_MIB - 1))

# disk_filesystems TREE WORK ROOT_UUID [ROOT_LABEL ESP_LABEL ESP_SERIAL]: WORK/root.img (ext4 of
# TREE) and WORK/esp.img (empty vfat); an empty or missing label or serial is left to mkfs.
disk_filesystems() {
  local tree=$1 work=$2 root_uuid=$3 root_label=${4:-} esp_label=${5:-} esp_serial=${6:-}
  local ext4_opts=() vfat_opts=()
  [[ -n $root_label ]] && ext4_opts+=(-L "$root_label")
  [[ -n $esp_label ]] && vfat_opts+=(-n "$esp_label")
  [[ -n $esp_serial ]] && vfat_opts+=(-i "$esp_serial")
  rm -f "$work/root.img" "$work/esp.img"
  # GRUB 2.06 reads neither orphan_file nor metadata_csum_seed.
  mkfs.ext4 -q -F "${ext4_opts[@]}" -U "$root_uuid" -O ^orphan_file,^metadata_csum_seed \
    -E root_owner=0:0 -d "$tree" "$work/root.img" "${DISK_ROOT_MIB}M"
  mkfs.vfat -C -F 32 "${vfat_opts[@]}" "$work/esp.img" $((DISK_ESP_MIB * 1024)) >/dev/null
}

# disk_boot_loaders WORK ROOT_UUID: GRUB for x86_64-efi on WORK/esp.img and for i386-pc in
# WORK/core.img (checked to fit the BIOS boot partition).
disk_boot_loaders() {
  local work=$1 root_uuid=$2 core_sectors
  cat >"$work/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $root_uuid
set prefix=(\$root)/boot/grub
configfile \$prefix/grub.cfg
EOF
  local common_mods="part_gpt part_msdos ext2 search search_fs_uuid probe linux normal configfile echo
    test gzio xzio zstd serial terminal terminfo ls cat sleep reboot halt minicmd"
  # shellcheck disable=SC2086 # the module list is meant to split
  grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -p /boot/grub -c "$work/early.cfg" \
    $common_mods fat efi_gop efi_uga all_video
  # shellcheck disable=SC2086
  grub-mkimage -O i386-pc -o "$work/core.img" -p /boot/grub -c "$work/early.cfg" \
    $common_mods biosdisk
  mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
  mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
  ((core_sectors <= DISK_BIOS_MIB * 2048)) || { echo "disk: core.img does not fit the BIOS boot partition" >&2; return 1; }
}

# disk_assemble WORK RAW [DISK_GUID BIOS_GUID ESP_GUID ROOT_GUID]: RAW, a GPT disk of WORK's
# filesystems and boot loaders; the GUIDs fixed when given (so that two builds of the same
# inputs give the same layout), sfdisk's random ones otherwise.
disk_assemble() {
  local work=$1 raw=$2 disk_guid=${3:-} bios_guid=${4:-} esp_guid=${5:-} root_guid=${6:-}
  local bios_start=2048 esp_start=$((2048 * (1 + DISK_BIOS_MIB))) root_start=$((2048 * (1 + DISK_BIOS_MIB + DISK_ESP_MIB)))
  local core_sectors
  core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
  rm -f "$raw" && truncate -s "${DISK_MIB}M" "$raw"
  sfdisk --quiet "$raw" <<EOF
label: gpt
${disk_guid:+label-id: $disk_guid}
start=$bios_start, size=$((DISK_BIOS_MIB * 2048)), type=21686148-6449-6E6F-744E-656564454649${bios_guid:+, uuid=$bios_guid}, name=bios
start=$esp_start, size=$((DISK_ESP_MIB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B${esp_guid:+, uuid=$esp_guid}, name=esp
start=$root_start, size=$((DISK_ROOT_MIB * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709${root_guid:+, uuid=$root_guid}, name=root
EOF
  dd if="$work/esp.img" of="$raw" bs=1M seek=$((esp_start / 2048)) conv=notrunc,sparse status=none
  dd if="$work/root.img" of="$raw" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
  # Legacy BIOS, as grub-bios-setup does it: core.img into the BIOS boot partition, its first
  # sector's blocklist (last 12 bytes: u64 LBA, u16 count) pointing at the rest of it; boot.img's
  # code (first 440 bytes, the partition table stays) in the MBR with core's LBA at 0x5c and the
  # drive check at 0x66 replaced by two NOPs (a hard disk, not a floppy).
  cp "$work/core.img" "$work/core.patched"
  { disk_le $((bios_start + 1)) 8; disk_le $((core_sectors - 1)) 2; } |
    dd of="$work/core.patched" bs=1 seek=500 conv=notrunc status=none
  dd if="$work/core.patched" of="$raw" bs=512 seek=$bios_start conv=notrunc status=none
  cp /usr/lib/grub/i386-pc/boot.img "$work/boot.img"
  disk_le $bios_start 8 | dd of="$work/boot.img" bs=1 seek=$((0x5c)) conv=notrunc status=none
  printf '\x90\x90' | dd of="$work/boot.img" bs=1 seek=$((0x66)) conv=notrunc status=none
  dd if="$work/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
}

# disk_le VALUE BYTES: VALUE as BYTES little-endian bytes.
disk_le() { local v=$1 n=$2 i; for ((i = 0; i < n; i++)); do printf "\\x$(printf %02x $(((v >> (8 * i)) & 255)))"; done; }
