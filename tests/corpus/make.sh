#!/usr/bin/env bash
# make.sh: regenerate the bad-input corpus of tests/bad_input.rs, deterministically, with real
# tools only: GNU tar, gzip, coreutils (dd, truncate, head, sha256sum), sfdisk (util-linux),
# mkfs.fat (dosfstools) and mcopy (mtools).
#
# usage: tests/corpus/make.sh [--out DIR] [--seeds DIR]
#
#   Rewrites the corpus files next to this script (see README.md for what each one is).
#   --out DIR     write the corpus files into DIR instead (tests use this: they never rewrite
#                 the committed files)
#   --seeds DIR   also write the valid inputs the bad ones are derived from into DIR (a GPT and
#                 an MBR disk image, state.tgz, local.tgz, a config bundle, an encrypted-style
#                 state.tgz, boot.cfg, esx.conf): mutation-test inputs and fuzz seeds, never
#                 committed.
#
# Every file is byte-reproducible: fixed mtimes, owners and UUIDs, `gzip -n`, `mkfs.fat
# --invariant`, pseudo-random bytes from sha256 in counter mode. Disk images are kept tiny (FAT12
# banks of 48 KiB, 76-138 KiB images) because they are committed raw: `inspect` reads raw disks.
set -euo pipefail
export LC_ALL=C TZ=UTC MTOOLS_SKIP_CHECK=1
PATH=$PATH:/usr/sbin:/sbin

die() { echo "make.sh: $*" >&2; exit 2; }
seeds= out=$(cd "$(dirname "$0")" && pwd)
while [ $# -gt 0 ]; do
  case $1 in
    --seeds) [ $# -ge 2 ] || die "usage: $0 [--out DIR] [--seeds DIR]"; seeds=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    --out) [ $# -ge 2 ] || die "usage: $0 [--out DIR] [--seeds DIR]"; out=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    *) die "usage: $0 [--out DIR] [--seeds DIR]" ;;
  esac
done
for t in tar gzip sha256sum dd truncate sfdisk mkfs.fat mcopy; do
  command -v "$t" >/dev/null || die "missing tool: $t (Debian: tar gzip coreutils fdisk dosfstools mtools)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/bootbank-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

MTIME=1700000000
SECTOR=512

# ---- helpers -------------------------------------------------------------------------------

# prng N SEED: N pseudo-random bytes, sha256 in counter mode.
# (Written to a file first: `head` closing a pipe early would kill the loop under pipefail.)
prng() {
  local n=$1 seed=$2 i=0 f
  f=$(mktemp prng.XXXXXX)
  while [ $((i * 32)) -lt "$n" ]; do
    # shellcheck disable=SC2059  # the format is only \xHH escapes
    printf "$(printf '%s-%d' "$seed" "$i" | sha256sum | cut -c1-64 | sed 's/../\\x&/g')" >>"$f"
    i=$((i + 1))
  done
  head -c "$n" "$f"
  rm -f "$f"
}

# put FILE OFFSET FORMAT: overwrite bytes at OFFSET with printf FORMAT, never growing the file.
put() {
  # shellcheck disable=SC2059
  printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# tgz OUT DIR MEMBER...: a gzip'd tar like busybox writes (GNU/"ustar  " headers), reproducible.
tgz() {
  local o=$1 d=$2
  shift 2
  tar --format=gnu --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$MTIME \
    -C "$d" -cf - "$@" | gzip -n -9 >"$o"
}

# stamp FILE...: the fixed mtime, so mcopy -m and tar give the same bytes every time.
stamp() { touch -d @$MTIME "$@"; }

# bank IMG START_SECTOR SIZE_KIB LABEL VOLID UUID_ESCAPES [MAGIC=yes|no] [FILE...]:
# a FAT12 bootbank at START_SECTOR: two reserved sectors, the second one carrying
# `VMWARE FAT16    ` and the 16-byte bank UUID, like the bootloader expects.
bank() {
  local img=$1 start=$2 kib=$3 label=$4 volid=$5 uuid=$6 magic=$7
  shift 7
  mkfs.fat --invariant -F 12 -R 2 -r 16 -s 1 -n "$label" -i "$volid" --offset="$start" \
    "$img" "$kib" >/dev/null 2>&1 || die "mkfs.fat failed on $img at sector $start"
  if [ "$magic" = yes ]; then
    put "$img" $(((start + 1) * SECTOR)) "VMWARE FAT16    $uuid"
  fi
  if [ $# -gt 0 ]; then
    mcopy -m -i "$img@@$((start * SECTOR))" "$@" ::
  fi
}

# ---- the valid inputs everything below is derived from ----------------------------------

mkdir -p root/etc/vmware
cat >root/etc/vmware/esx.conf <<'EOF'
/adv/Misc/HostName = "esx01"
/device/000:003:00.0/owner = "vmkernel"
/device/000:003:00.0/vmkname = "vmnic0"
/device/000:022:00.0/owner = "vmkernel"
/device/000:022:00.0/vmkname = "vmhba2"
/system/uuid = "5f2b3c4d-1a2b-3c4d-5e6f-0123456789ab"
EOF
printf '127.0.0.1 localhost\n10.0.0.11 esx01\n' >root/etc/hosts
printf 'root:x:0:0:Administrator:/:/bin/sh\n' >root/etc/passwd
stamp root/etc/vmware/esx.conf root/etc/hosts root/etc/passwd
tgz local.tgz root etc/hosts etc/passwd etc/vmware/esx.conf
mkdir -p state && cp local.tgz state/ && stamp state/local.tgz
tgz state.tgz state local.tgz

mkdir -p bundle
printf 'RELEASELEVEL=VMware ESXi 7.0.3 build-22348816\nUUID=52e4f3a1-0b7c-11e4-9c1d-002590aabb01\nKERNELOPTS=\nUSEROPTS=\n' \
  >bundle/Manifest.txt
cp state.tgz bundle/ && stamp bundle/Manifest.txt bundle/state.tgz
tgz bundle.tgz bundle Manifest.txt state.tgz

printf '.encoding = "UTF-8"\nincludeKeyCache = "FALSE"\nmode = "NONE"\nConfigEncData = "keyId=fmLOxWrvTX6Di8rjLu/SUQ%%3d%%3d:data1=Uz8MFZfqTbWN2jIHbFPhag%%3d%%3d:data2=IDcZE41aR+uxDv7Iz8zJSA%%3d%%3d:version=1"\n' \
  >encryption.info

cat >boot.cfg <<'EOF'
bootstate=0
title=Loading VMware ESXi
timeout=5
prefix=
kernel=b.b00
kernelopt=autoPartition=FALSE
modules=b.b00 --- jumpstrt.gz --- useropts.gz --- features.gz --- k.b00 --- state.tgz
build=7.0.3-0.95.22348816
updated=2
EOF
stamp boot.cfg state.tgz

B1='\x3b\xc3\xb0\x66\xf8\xdf\x53\xd2\x3e\x01\x1e\x00\xf5\x00\x01\x3e'
B2='\x3c\xc3\xb0\x66\xf8\xdf\x53\xd2\x3e\x01\x1e\x00\xf5\x00\x01\x3e'

# GPT disk, 512-byte sectors, 128-entry table: 1 EFI (unformatted), 5 bootbank (48 KiB FAT12),
# optionally 6 a second bank. First and last usable LBA as sfdisk lays them out.
gpt() {
  local img=$1 sectors=$2
  shift 2
  rm -f "$img"
  truncate -s $((sectors * SECTOR)) "$img"
  {
    echo 'label: gpt'
    echo 'label-id: 6C1E2B4A-0000-4000-8000-000000000001'
    echo 'unit: sectors'
    echo 'first-lba: 34'
    echo "$img""1 : start=40, size=8, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=6C1E2B4A-0000-4000-8000-000000000011, name=\"EFI System\""
    echo "$img""5 : start=48, size=96, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=6C1E2B4A-0000-4000-8000-000000000015, name=\"BOOTBANK1\""
    for p in "$@"; do echo "$p"; done
  } | sfdisk -q --no-reread --no-tell-kernel "$img" >/dev/null
}
GPT_SECTORS=180 # 48 + 96 + 33 backup sectors, rounded up
gpt valid-gpt.img $GPT_SECTORS
bank valid-gpt.img 48 48 BOOTBANK1 0x1b0075a1 "$B1" yes boot.cfg state.tgz

# MBR disk like a host upgraded from 4.x: 1 FAT (unformatted), 2 extended holding logical 5 (the
# bank) and logical 6 (small, unformatted). The first EBR sits at sector 32, the second at 143.
mbr() {
  local img=$1
  rm -f "$img"
  truncate -s $((152 * SECTOR)) "$img"
  printf 'label: dos\nlabel-id: 0x1c2b3a49\nunit: sectors\nstart=8, size=24, type=4\nstart=32, size=120, type=5\nstart=40, size=96, type=6\nstart=144, size=8, type=6\n' |
    sfdisk -q --no-reread --no-tell-kernel "$img" >/dev/null
}
mbr valid-mbr.img
bank valid-mbr.img 40 48 BOOTBANK1 0x1b0075a1 "$B1" yes boot.cfg state.tgz

# ---- not ESXi at all ----------------------------------------------------------------------

: >"$out/empty.bin"
head -c 12288 /dev/zero >"$out/zeros.bin"
prng 4096 bootbank-corpus-random >"$out/random.bin"
cat >"$out/text.txt" <<'EOF'
This is a plain text file, not a disk image, a bootbank partition or an archive.
Someone ran `bootbank inspect notes.txt` by mistake.
EOF

# ---- the archive layers -------------------------------------------------------------------

# A state.tgz cut in half: the gzip stream ends early.
head -c $(($(stat -c %s state.tgz) / 2)) state.tgz >"$out/gzip-truncated.tgz"

# esx.conf gzip'd on its own: valid gzip, but no tar inside.
gzip -n -9 -c root/etc/vmware/esx.conf >"$out/gzip-not-tar.gz"

# A tar cut in the middle of its only member's data, then gzip'd whole (the gzip is fine).
mkdir -p big/etc/vmware
{ cat root/etc/vmware/esx.conf; prng 3000 bootbank-corpus-tar | od -An -tx1 | tr -d ' \n' | fold -w 60 |
  sed 's|^|/adv/Misc/Pad = "|; s|$|"|'; } >big/etc/vmware/esx.conf
stamp big/etc/vmware/esx.conf
tar --format=gnu --owner=0 --group=0 --numeric-owner --mtime=@$MTIME -C big -cf big.tar etc/vmware/esx.conf
head -c 2048 big.tar | gzip -n -9 >"$out/tar-truncated-member.tgz"

# A state.tgz holding an empty tar (just the two zero end-of-archive blocks).
tar --format=gnu -cf - -T /dev/null | gzip -n -9 >"$out/state-empty-tar.tgz"

# A 7.0U2-style state.tgz that lost local.tgz.ve: only encryption.info is left.
mkdir -p noloc && cp encryption.info noloc/ && stamp noloc/encryption.info
tgz "$out/state-without-local.tgz" noloc encryption.info

# A state.tgz whose local.tgz holds no etc/vmware/esx.conf.
mkdir -p noconf/state && tgz noconf/state/local.tgz root etc/hosts etc/passwd && stamp noconf/state/local.tgz
tgz "$out/local-without-esxconf.tgz" noconf/state local.tgz

# A config bundle whose state.tgz is missing: Manifest.txt only.
tgz "$out/bundle-without-state.tgz" bundle Manifest.txt

# A config bundle whose state.tgz is a plain tar (never gzip'd).
mkdir -p bundle2 && cp bundle/Manifest.txt bundle2/ &&
  tar --format=gnu --owner=0 --group=0 --numeric-owner --mtime=@$MTIME -C state -cf bundle2/state.tgz local.tgz
stamp bundle2/Manifest.txt bundle2/state.tgz
tgz "$out/bundle-state-not-gzip.tgz" bundle2 Manifest.txt state.tgz

# A 7.0U2-style state.tgz whose local.tgz.ve is not an envelope (a plain local.tgz renamed).
mkdir -p ve && cp encryption.info ve/ && cp local.tgz ve/local.tgz.ve && stamp ve/*
tgz "$out/state-ve-not-envelope.tgz" ve encryption.info local.tgz.ve

# A 7.0U2-style state.tgz whose encryption.info has no mode line (the envelope is fine).
mkdir -p nomode && grep -v '^mode' encryption.info >nomode/encryption.info
{ printf 'DataTransformEnvelope'; head -c $((4096 - 21)) /dev/zero; } >nomode/local.tgz.ve
stamp nomode/*
tgz "$out/state-encryption-info-no-mode.tgz" nomode encryption.info local.tgz.ve

# esx.conf in Latin-1 (not UTF-8) inside an otherwise valid state.tgz > local.tgz.
mkdir -p latin1/etc/vmware latin1/state
{ cat root/etc/vmware/esx.conf; printf '/adv/UserVars/Owner = "M\xfcller"\n'; } >latin1/etc/vmware/esx.conf
stamp latin1/etc/vmware/esx.conf
tgz latin1/state/local.tgz latin1 etc/vmware/esx.conf && stamp latin1/state/local.tgz
tgz "$out/esxconf-not-utf8.tgz" latin1/state local.tgz

# ---- the disk layers ----------------------------------------------------------------------

LAST=$((GPT_SECTORS - 1))

# Primary and backup GPT headers both fail their CRC (one byte of the disk GUID changed in each).
cp valid-gpt.img "$out/gpt-headers-corrupt.img"
put "$out/gpt-headers-corrupt.img" $((SECTOR + 56)) 'X'
put "$out/gpt-headers-corrupt.img" $((LAST * SECTOR + 56)) 'X'

# Both `EFI PART` signatures wiped; the protective MBR is left, so it still looks like GPT.
cp valid-gpt.img "$out/gpt-signatures-wiped.img"
put "$out/gpt-signatures-wiped.img" $SECTOR '\0\0\0\0\0\0\0\0'
put "$out/gpt-signatures-wiped.img" $((LAST * SECTOR)) '\0\0\0\0\0\0\0\0'

# The image ends in the middle of bank 5 (a copy that stopped early).
cp valid-gpt.img "$out/gpt-truncated-in-bank.img"
truncate -s $(((48 + 40) * SECTOR)) "$out/gpt-truncated-in-bank.img"

# Two FAT partitions of type Basic Data, neither with the bank magic in its second sector.
gpt gpt-no-bank-magic.img 276 \
  'gpt-no-bank-magic.img6 : start=144, size=96, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=6C1E2B4A-0000-4000-8000-000000000016, name="BOOTBANK2"'
bank gpt-no-bank-magic.img 48 48 BOOTBANK1 0x1b0075a1 "$B1" no boot.cfg state.tgz
bank gpt-no-bank-magic.img 144 48 BOOTBANK2 0x1b0075a2 "$B2" no boot.cfg
cp gpt-no-bank-magic.img "$out/"

# Bank 5 keeps its magic and UUID, but its FAT boot sector is zeroed.
cp valid-gpt.img "$out/gpt-bank-boot-sector-wiped.img"
dd if=/dev/zero of="$out/gpt-bank-boot-sector-wiped.img" bs=$SECTOR seek=48 count=1 conv=notrunc status=none

# MBR: the first EBR's link to the next EBR points far past the end of the disk.
cp valid-mbr.img "$out/mbr-ebr-link-beyond-disk.img"
put "$out/mbr-ebr-link-beyond-disk.img" $((32 * SECTOR + 446 + 16 + 8)) '\x00\x10\x00\x00'

# MBR: the first EBR has lost its 55 AA signature, so the logical partitions are gone.
cp valid-mbr.img "$out/mbr-ebr-no-signature.img"
put "$out/mbr-ebr-no-signature.img" $((32 * SECTOR + 510)) '\0\0'

# MBR: a valid bank whose state.tgz is cut in half (the FAT directory entry says so too).
head -c $(($(stat -c %s state.tgz) / 2)) state.tgz >half && mv half state.tgz && stamp state.tgz
mbr mbr-bank-state-truncated.img
bank mbr-bank-state-truncated.img 40 48 BOOTBANK1 0x1b0075a1 "$B1" yes boot.cfg state.tgz
cp mbr-bank-state-truncated.img "$out/"

if [ -n "$seeds" ]; then
  cp valid-gpt.img valid-mbr.img local.tgz bundle.tgz "$seeds/"
  cp state/local.tgz "$seeds/local.tgz"
  tgz "$seeds/state.tgz" state local.tgz
  mkdir -p enc && cp encryption.info enc/ && cp nomode/local.tgz.ve enc/ && stamp enc/*
  tgz "$seeds/state-encrypted.tgz" enc encryption.info local.tgz.ve
  cp boot.cfg root/etc/vmware/esx.conf "$seeds/"
fi
echo "make.sh: wrote $(find "$out" -maxdepth 1 -type f ! -name make.sh ! -name README.md | wc -l) files to $out"
