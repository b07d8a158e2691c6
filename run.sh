#!/usr/bin/env bash
# The project's two commands on a fresh Debian 12 machine (run as root). Each
# first installs whatever is missing (scripts/setup.sh, idempotent and quick
# when everything is there), then:
#
#   ./run.sh demo   build, bring up the demo rack in the lab, show it working
#   ./run.sh test   run every test; privileged lab tests boot Debian's kernel
#                   in a VM when this kernel lacks bonding, 802.1Q, bridge VLAN
#                   filtering or the OVS datapath
#                   (`./run.sh test --only kernel_firewall`: only the binaries
#                   named; the others are listed as not run; refused if CI=true)
#
# Output can be redirected (`./run.sh demo > demo.log 2>&1`): the VM's output
# comes through the runner's own stdout and stderr.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

case "${1:-}" in
  demo | test) ;;
  *)
    echo "usage: $0 demo | test [--only NAME]..." >&2
    exit 2
    ;;
esac

start=$(date +%s)
scripts/setup.sh
echo "==> phase setup took $(( $(date +%s) - start ))s" >&2
export PATH="$HOME/.cargo/bin:$PATH"

case "$1" in
  demo) exec cargo xtask demo ;;
  test) shift; exec cargo xtask test "$@" ;;
esac
