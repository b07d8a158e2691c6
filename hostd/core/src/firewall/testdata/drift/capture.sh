#!/usr/bin/env bash
# Regenerates the listings of this directory: hostd applies spec.yaml in a
# private network namespace, then each case edits hostd's table by hand with
# nft and the full listing (`nft -j list table inet hostd`) is saved.
# Run as root from the repository root after `cargo build -p hostd`:
#   hostd/core/src/firewall/testdata/drift/capture.sh target/debug/hostd
set -euo pipefail
if [[ ${1:-} != --inside ]]; then
  exec unshare -n "$0" --inside "$(realpath "${1:?path to the hostd binary}")"
fi
hostd=$2
dir=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
handle() { # chain, tag: handle of hostd's rule with that tag
  nft -a list chain inet hostd "$1" | grep "comment \"$2[\" ]" | sed 's/.*# handle //'
}
set_named() { # prefix: name of hostd's set starting with it
  nft -j list sets inet | grep -o "\"name\": \"$1[^\"]*\"" | head -1 | cut -d'"' -f4
}
save() { nft -j list table inet hostd >"$dir/$1.json"; }
fresh() { "$hostd" firewall apply --force "$dir/spec.yaml" >/dev/null; }

fresh
save applied
fresh
nft insert rule inet hostd input tcp dport 23 counter accept
save insert-rule
fresh
nft delete rule inet hostd input handle "$(handle input rule:2/v4)"
save delete-rule
fresh
nft add element inet hostd "$(set_named r0_src4_)" "{ 10.0.0.0/8 }"
save add-element
fresh
nft chain inet hostd input "{ policy accept; }"
save input-policy
fresh
nft chain inet hostd output "{ policy drop; }"
save output-policy
fresh
nft replace rule inet hostd input handle "$(handle input rule:1)" \
  iifname eth0 udp dport "{ 53, 54 }" counter reject comment '"rule:1"'
save replace-rule
fresh
nft add counter inet hostd handcount
nft add chain inet hostd extra
nft add rule inet hostd extra counter
save foreign-objects
