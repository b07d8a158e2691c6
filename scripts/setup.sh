#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine (run as root) for building
# and testing this project: apt packages, the VM tooling (virtme-ng in a venv,
# qemu, Debian's kernel package), the eBPF toolchain (rust-src, bpf-linker
# against LLVM 22) and the real peers later tests use.
#
# Fast when everything is already there: each step checks before it acts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HOSTNET_VENV:-/opt/hostnet/venv}"
BPF_LINKER_VERSION=0.13.0
VIRTME_NG_VERSION=1.42

log() { printf '[setup] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh must run as root (it installs packages and creates namespaces)" >&2
  exit 1
fi

APT_PACKAGES=(
  # build
  build-essential pkg-config clang llvm-22-dev libclang-dev zlib1g-dev libzstd-dev
  libelf-dev libssl-dev git curl ca-certificates python3-venv jq
  # fleet: the channel's .proto compiled by tonic-prost-build
  protobuf-compiler
  # VM runner: Debian's kernel booted by virtme-ng under qemu
  qemu-system-x86 linux-image-amd64 busybox-static
  # networking tools and real peers
  iproute2 iputils-ping ethtool bridge-utils nftables tcpdump tshark
  openvswitch-switch pmacct snmpd snmp rrdtool lldpd ifupdown2 dbus-daemon
  iperf3 socat netcat-openbsd procps kmod
  # hostd daemon tests: gdbus (busctl comes with systemd), setpriv (util-linux)
  libglib2.0-bin util-linux
  # hostd's dns-resolver test runs its own systemd-resolved on a private bus
  # (hostd/hostd/tests/resolved.rs); see the resolv.conf save/restore below
  systemd-resolved
  # collector graphs: the headless-browser test of the HTML page
  # (collector/tests/ui_browser.rs)
  chromium
  # collector remote-write test: a private Prometheus with its remote-write
  # receiver (collector/tests/remote_write.rs)
  prometheus
  # packaging (packaging/README.md): lintian checks the .deb, rpm lists the
  # .rpm (rpm -qlp), systemd-analyze verifies the units and scores them
  # against the units they order themselves by (dbus.socket from dbus,
  # systemd-udev-trigger.service from udev)
  lintian rpm systemd dbus udev
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Never start the daemons we install (lldpd, snmpd, openvswitch, ...) on the
  # host: tests start their own instances inside namespaces or the VM.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -qq
  # systemd-resolved's postinst points /etc/resolv.conf at its stub
  # (/run/systemd/resolve/stub-resolv.conf). Nothing serves that stub here
  # (no systemd as PID 1; the tests start resolved privately), so the host's
  # file is saved before the install and put back byte-identical after it.
  resolv_saved="$(mktemp -d)"
  cp -a /etc/resolv.conf "$resolv_saved/resolv.conf"
  restore_resolv_conf() {
    kind() { if [ -L "$1" ]; then echo "symlink $(readlink "$1")"; else echo file; fi; }
    if [ "$(kind /etc/resolv.conf)" != "$(kind "$resolv_saved/resolv.conf")" ] \
      || ! cmp -s /etc/resolv.conf "$resolv_saved/resolv.conf"; then
      log "restoring /etc/resolv.conf (a package replaced it)"
      # A bind-mounted file (containers) cannot be removed: rewrite it in place.
      if ! { rm -f /etc/resolv.conf && cp -a "$resolv_saved/resolv.conf" /etc/resolv.conf; }; then
        cat "$resolv_saved/resolv.conf" > /etc/resolv.conf
      fi
    fi
    rm -rf "$resolv_saved"
  }
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    restore_resolv_conf
    exit 1
  fi
  restore_resolv_conf
else
  log "apt packages: all present"
fi

# virtme-ng in a venv (Debian's python blocks system pip, PEP 668).
if [ ! -x "$VENV/bin/vng" ] || ! "$VENV/bin/vng" --version 2>/dev/null | grep -q "$VIRTME_NG_VERSION"; then
  log "installing virtme-ng $VIRTME_NG_VERSION in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "virtme-ng==$VIRTME_NG_VERSION"
else
  log "virtme-ng: present"
fi

# snmpsim for the collector's SNMP tests (issue 13), in the same venv;
# snmpsim 1.2.2 imports pysmi without declaring it.
SNMPSIM_VERSION=1.2.2
if ! "$VENV/bin/python" -c "import snmpsim, pysmi, sys; sys.exit(snmpsim.__version__ != '$SNMPSIM_VERSION')" 2>/dev/null; then
  log "installing snmpsim $SNMPSIM_VERSION in $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "snmpsim==$SNMPSIM_VERSION" "pysmi==2.0.0"
else
  log "snmpsim: present"
fi

# Rust: rustfmt and clippy for CI, rust-src for the eBPF target (built with RUSTC_BOOTSTRAP via aya-build).
for component in rust-src rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    log "adding $component"
    rustup component add "$component"
  fi
done

# bpf-linker built against Debian's LLVM 22 (without LLVM_PREFIX it finds llvm-config 14).
if ! command -v bpf-linker >/dev/null 2>&1 || ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (~2 min)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked "bpf-linker@$BPF_LINKER_VERSION" \
    --no-default-features --features llvm-22
else
  log "bpf-linker: present"
fi

# packaging (packaging/README.md): cargo-deb and cargo-generate-rpm, pinned,
# installed only when missing or of another version.
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  log "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked "cargo-deb@$CARGO_DEB_VERSION"
else
  log "cargo-deb: present"
fi
if ! cargo generate-rpm --version 2>/dev/null | grep -q "$CARGO_GENERATE_RPM_VERSION"; then
  log "installing cargo-generate-rpm $CARGO_GENERATE_RPM_VERSION"
  cargo install --locked "cargo-generate-rpm@$CARGO_GENERATE_RPM_VERSION"
else
  log "cargo-generate-rpm: present"
fi

log "ready"
