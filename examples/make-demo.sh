#!/usr/bin/env bash
# make-demo.sh: build examples/demo.img, an 8 MiB ESXi-like boot disk of "a host that
# made the story's mistake", with the fixture builder in tests/tools (real tools only:
# sfdisk, mkfs.fat, mtools, dd, GNU tar, gzip). The result is byte-reproducible.
#
# usage: examples/make-demo.sh [OUT_IMG]        (default: examples/demo.img)
#
# Bank 5 (partition 5, UUID bce53c44-7c409452-6d9c-54f415677c86): installed
#   6.7.0-0.0.14320388, updated=3, bootstate=0 -> the bank that boots next. Its
#   state.tgz > local.tgz > etc/vmware/esx.conf has the story's line
#   /device/000:022:00.0/owner = "passthru" (vmkname vmhba2, the boot disk's controller).
# Bank 6 (UUID 6250e3f8-944fc3bd-ee94-ccd1286a4e05): the older build
#   6.7.0-0.0.13981272, updated=2, bootstate=0, with the healthy config ("vmkernel").
# Both hold dummy payload files for every boot.cfg module. state.tgz is the plain
# (pre-7.0U2) kind: state.tgz holding local.tgz.
set -euo pipefail
export LC_ALL=C TZ=UTC
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
tools=$repo/tests/tools
conf=$repo/tests/fixtures/esxconf
out=${1:-$here/demo.img}

work=$(mktemp -d "${TMPDIR:-/tmp}/make-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

modules="jumpstrt.gz useropts.gz features.gz k.b00 uc_intel.b00 uc_amd.b00 uc_hygon.b00
procfs.b00 vmx.v00 vim.v00 tpm.v00 sb.v00 s.v00 lsi_mr3.v00 nvme_pci.v00 vmkusb.v00
esx_ui.v00 tools.t00 xorg.v00 gc.v00 imgdb.tgz"

# the same text as boot_cfg() in tests/common/mod.rs
boot_cfg() {   # build updated bootstate
  local list
  list=$(printf '%s --- ' $modules)
  printf 'bootstate=%s\ntitle=Loading VMware ESXi\ntimeout=5\nprefix=\nkernel=b.b00\n' "$3"
  printf 'kernelopt=autoPartition=FALSE\nmodules=%sstate.tgz\nbuild=%s\nupdated=%s\n' "$list" "$1" "$2"
}

payload() {    # dir
  local name text i
  for name in b.b00 $modules; do
    text=
    for i in $(seq 24); do text+="bootbank test payload $name"$'\n'; done
    case $name in
      *.tgz) mkdir -p "$work/p"; printf '%s' "$text" > "$work/p/payload.txt"
             tar --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -C "$work/p" \
                 -cf - payload.txt | gzip -n > "$1/$name" ;;
      *.gz)  printf '%s' "$text" | gzip -n > "$1/$name" ;;
      *)     printf '%s' "$text" > "$1/$name" ;;
    esac
  done
}

bank() {       # n build updated bootstate esx.conf
  local dir=$work/bank$1 root=$work/root$1
  mkdir -p "$dir" "$root/etc/vmware"
  boot_cfg "$2" "$3" "$4" > "$dir/boot.cfg"
  payload "$dir"
  printf '127.0.0.1\tlocalhost.localdomain localhost\n::1\tlocalhost.localdomain localhost\n' > "$root/etc/hosts"
  printf 'root:x:0:0:Administrator:/:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:*:19000:0:99999:7:::\n' > "$root/etc/shadow"
  cp "$5" "$root/etc/vmware/esx.conf"
  bash "$tools/mkstate" "$root" "$dir/state.tgz"
}

bank 5 6.7.0-0.0.14320388 3 0 "$conf/story.conf"
bank 6 6.7.0-0.0.13981272 2 0 "$conf/healthy.conf"
bash "$tools/mkdisk" --layout demo --out "$out" --bank5 "$work/bank5" --bank6 "$work/bank6"
bash "$tools/fsck-banks" -q "$out"
echo "built $out"
