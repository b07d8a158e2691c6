#!/bin/bash
# Second capture: non-root read, expired partner, churned, LLDP over a bond member with VLANs.
set -u
OUT=${OUT:-/work/status-capture/out2}
mkdir -p "$OUT"
P=cap$$
ns() { ip netns add $P-$1; ip -n $P-$1 link set lo up; }
ex() { local n=$1; shift; ip netns exec $P-$n "$@"; }
cable() { ip -n $P-$1 link add $2 type veth peer name $4 netns $P-$3; }
waitfor() { local t=$1; shift; for i in $(seq 1 $((t*5))); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 0.2; done; return 1; }
# static switch for churn (start first, it needs >60 s)
ns srv3; ns swc
cable srv3 eth0 swc Ethernet1
cable srv3 eth1 swc Ethernet2
ex swc ip link add Po1 type bond mode balance-xor miimon 100
for p in Ethernet1 Ethernet2; do ex swc ip link set $p master Po1; ex swc ip link set $p up; done
ex swc ip link set Po1 up
ex srv3 ip link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100
for p in eth0 eth1; do ex srv3 ip link set $p master bond0; done
ex srv3 ip link set bond0 up
T0=$(date +%s)
# LACP + LLDP with VLAN-filtering bridge
ns srv1; ns sw1
cable srv1 eth0 sw1 Ethernet1
cable srv1 eth1 sw1 Ethernet2
ex sw1 ip link add br0 type bridge stp_state 0 vlan_filtering 1
ex sw1 ip link add Po1 type bond mode 802.3ad lacp_rate fast miimon 100 ad_actor_system 02:00:00:00:aa:01 ad_user_port_key 1
for p in Ethernet1 Ethernet2; do ex sw1 ip link set $p master Po1; done
ex sw1 ip link set Po1 master br0
for p in Ethernet1 Ethernet2 Po1 br0; do ex sw1 ip link set $p up; done
ex sw1 bridge vlan del vid 1 dev Po1
ex sw1 bridge vlan add vid 100 dev Po1
ex sw1 bridge vlan add vid 200 dev Po1
ex sw1 bridge vlan add vid 10 dev Po1 pvid untagged
ex srv1 ip link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100
for p in eth0 eth1; do ex srv1 ip link set $p master bond0; done
ex srv1 ip link set bond0 up
SW=/run/$P-sw1.sock; SRV=/run/$P-srv1.sock
ex sw1 lldpd -d -u $SW -I Ethernet1,Ethernet2 -S "lab switch sw1" -M 4 >/dev/null 2>&1 &
ex srv1 lldpd -d -u $SRV -I eth0,eth1 >/dev/null 2>&1 &
waitfor 60 test -S $SW
waitfor 60 test -S $SRV
ex sw1 lldpcli -u $SW configure system hostname sw1
for p in Ethernet1 Ethernet2; do ex sw1 lldpcli -u $SW configure ports $p lldp portidsubtype local $p description $p; done
ex sw1 lldpcli -u $SW configure lldp tx-interval 1
ex srv1 lldpcli -u $SRV configure system hostname srv1
ex srv1 lldpcli -u $SRV configure ports eth0 lldp portdescription "srv1 eth0 (bond0)"
ex srv1 lldpcli -u $SRV configure lldp tx-interval 1
waitfor 90 sh -c "ip netns exec $P-srv1 cat /proc/net/bonding/bond0 | grep -c 'port state: 63' | grep -q 4"
waitfor 60 sh -c "ip netns exec $P-srv1 lldpcli -u $SRV -f json0 show neighbors details | grep -q Ethernet2"
waitfor 60 sh -c "ip netns exec $P-sw1 lldpcli -u $SW -f json0 show neighbors details | grep -q 'srv1 eth0'"
sleep 3
ex srv1 lldpcli -u $SRV -f json0 show neighbors details > "$OUT/json0-bond-members-vlans.json"
ex sw1 lldpcli -u $SW -f json0 show neighbors details > "$OUT/json0-switch-side.json"
ex srv1 cat /proc/net/bonding/bond0 > "$OUT/proc-8023ad-user-port-key.txt"
ex srv1 setpriv --reuid=65534 --regid=65534 --clear-groups cat /proc/net/bonding/bond0 > "$OUT/proc-8023ad-nonroot.txt" 2>&1
# expired: remove Ethernet2 from the switch LAG (stays up, stops speaking LACP)
ex sw1 ip link set Ethernet2 nomaster
ex sw1 ip link set Ethernet2 up
for i in $(seq 1 200); do
  t=$(ex srv1 cat /proc/net/bonding/bond0)
  st=$(echo "$t" | awk '/Slave Interface: eth1/{f=1} f&&/details actor/{a=1} f&&a&&/port state/{print $3; exit}')
  if [ -n "$st" ] && [ $((st & 128)) -ne 0 ]; then echo "$t" > "$OUT/proc-8023ad-expired.txt"; break; fi
  sleep 0.1
done
waitfor 30 sh -c "ip netns exec $P-srv1 cat /proc/net/bonding/bond0 | grep -q 'port state: 71'"
ex srv1 cat /proc/net/bonding/bond0 > "$OUT/proc-8023ad-after-expired.txt"
# churn: wait until 70 s after the static bond came up
while [ $(( $(date +%s) - T0 )) -lt 75 ]; do sleep 1; done
ex srv3 cat /proc/net/bonding/bond0 > "$OUT/proc-8023ad-static-churned.txt"
ex srv3 ip -d -j link show > "$OUT/ip-d-j-static-churned.json"
kill %1 %2 2>/dev/null
for n in srv1 sw1 srv3 swc; do ip netns del $P-$n; done
ls -la "$OUT"
