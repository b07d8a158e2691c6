#!/bin/bash
# Captures /proc/net/bonding and lldpcli json0 output from real scenarios.
# Run inside the VM (6.1): OUT=/work/status-capture/out
set -u
OUT=${OUT:-/work/status-capture/out}
mkdir -p "$OUT"
uname -r > "$OUT/uname.txt"
P=cap$$
ns() { ip netns add $P-$1; ip -n $P-$1 link set lo up; }
ex() { local n=$1; shift; ip netns exec $P-$n "$@"; }
cable() { # srvns nic swns port
  ip -n $P-$1 link add $2 type veth peer name $4 netns $P-$3
}
waitfor() { # secs cmd...
  local t=$1; shift
  for i in $(seq 1 $((t*5))); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 0.2; done; return 1
}
negotiated() { # ns bond nports
  local txt; txt=$(ex $1 cat /proc/net/bonding/$2)
  [ "$(echo "$txt" | grep -c 'port state: 63')" -ge $(( $3 * 2 )) ]
}
# --- scenario 1: server bond0 (eth0, eth1) to one switch LAG Po1 (802.3ad), plus eth2 to non-LAG port
ns srv1; ns sw1
cable srv1 eth0 sw1 Ethernet1
cable srv1 eth1 sw1 Ethernet2
cable srv1 eth2 sw1 Ethernet3
ex sw1 ip link add br0 type bridge stp_state 0
ex sw1 ip link add Po1 type bond mode 802.3ad lacp_rate fast miimon 100 ad_actor_system 02:00:00:00:aa:01
for p in Ethernet1 Ethernet2; do ex sw1 ip link set $p master Po1; done
ex sw1 ip link set Po1 master br0
ex sw1 ip link set Ethernet3 master br0
for p in Ethernet1 Ethernet2 Ethernet3 Po1 br0; do ex sw1 ip link set $p up; done
ex sw1 ip link set Ethernet1 mtu 9216; 
ex srv1 ip link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100
for p in eth0 eth1 eth2; do ex srv1 ip link set $p master bond0; done
ex srv1 ip link set bond0 up
waitfor 60 negotiated srv1 bond0 2
sleep 3
ex srv1 cat /proc/net/bonding/bond0 > "$OUT/proc-8023ad-nonlag-member.txt"
ex sw1 cat /proc/net/bonding/Po1 > "$OUT/proc-8023ad-switch-lag.txt"
ex srv1 ip -d -j link show > "$OUT/ip-d-j-8023ad-nonlag-member.json"
# pull eth1's cable
ex sw1 ip link set Ethernet2 down
waitfor 20 sh -c "ip netns exec $P-srv1 cat /proc/net/bonding/bond0 | grep -A1 'Slave Interface: eth1' | grep -q 'MII Status: down'"
sleep 2
ex srv1 cat /proc/net/bonding/bond0 > "$OUT/proc-8023ad-member-down.txt"
ex sw1 ip link set Ethernet2 up
# remove the non-lag member: clean negotiated 2-member bond
ex srv1 ip link set eth2 nomaster
waitfor 60 negotiated srv1 bond0 2
sleep 3
ex srv1 cat /proc/net/bonding/bond0 > "$OUT/proc-8023ad-negotiated.txt"
ex srv1 ip -d -j link show > "$OUT/ip-d-j-8023ad-negotiated.json"
# --- scenario 2: two switches not a pair, each with its own LAG
ns srv2; ns swa; ns swb
cable srv2 eth0 swa Ethernet1
cable srv2 eth1 swb Ethernet1
for s in swa swb; do
  ex $s ip link add Po1 type bond mode 802.3ad lacp_rate fast miimon 100 ad_actor_system 02:00:00:00:0$([ $s = swa ] && echo a || echo b):01
  ex $s ip link set Ethernet1 master Po1
  ex $s ip link set Ethernet1 up; ex $s ip link set Po1 up
done
ex srv2 ip link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100
for p in eth0 eth1; do ex srv2 ip link set $p master bond0; done
ex srv2 ip link set bond0 up
waitfor 60 sh -c "ip netns exec $P-srv2 cat /proc/net/bonding/bond0 | grep -c 'port state: 63' | grep -q 2"
sleep 4
ex srv2 cat /proc/net/bonding/bond0 > "$OUT/proc-8023ad-two-switches.txt"
# --- scenario 3: switch side static LAG (balance-xor)
ns srv3; ns swc
cable srv3 eth0 swc Ethernet1
cable srv3 eth1 swc Ethernet2
ex swc ip link add Po1 type bond mode balance-xor miimon 100
for p in Ethernet1 Ethernet2; do ex swc ip link set $p master Po1; ex swc ip link set $p up; done
ex swc ip link set Po1 up
ex srv3 ip link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100
for p in eth0 eth1; do ex srv3 ip link set $p master bond0; done
ex srv3 ip link set bond0 up
sleep 8
ex srv3 cat /proc/net/bonding/bond0 > "$OUT/proc-8023ad-static-switch.txt"
ex srv3 ip -d -j link show > "$OUT/ip-d-j-8023ad-static-switch.json"
# --- scenario 4: active-backup through a bridge switch
ns srv4; ns swd
cable srv4 eth0 swd Ethernet1
cable srv4 eth1 swd Ethernet2
ex swd ip link add br0 type bridge stp_state 0
for p in Ethernet1 Ethernet2; do ex swd ip link set $p master br0; ex swd ip link set $p up; done
ex swd ip link set br0 up
ex srv4 ip link add bond0 type bond mode active-backup miimon 100 primary eth0
for p in eth0 eth1; do ex srv4 ip link set $p master bond0; done
ex srv4 ip link set bond0 up
sleep 2
ex srv4 cat /proc/net/bonding/bond0 > "$OUT/proc-active-backup.txt"
ex swd ip link set Ethernet1 down
sleep 2
ex srv4 cat /proc/net/bonding/bond0 > "$OUT/proc-active-backup-failover.txt"
ex srv4 ip -d -j link show > "$OUT/ip-d-j-active-backup.json"
# --- scenario 5: bond with no ports, and 802.3ad slow rate, all down
ex srv4 ip link add bond1 type bond mode 802.3ad lacp_rate slow
ex srv4 cat /proc/net/bonding/bond1 > "$OUT/proc-8023ad-empty.txt"
ex srv4 ip link set bond1 up
ex srv4 cat /proc/net/bonding/bond1 > "$OUT/proc-8023ad-empty-up.txt"
# balance-rr / xor
ex swc cat /proc/net/bonding/Po1 > "$OUT/proc-balance-xor.txt"
for n in srv1 sw1 srv2 swa swb srv3 swc srv4 swd; do ip netns del $P-$n; done
ls -la "$OUT"
