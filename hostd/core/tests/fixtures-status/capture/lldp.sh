#!/bin/bash
set -u
OUT=${OUT:-/work/status-capture/lldp}
P=stcap$$
ip netns add $P-sw; ip netns add $P-srv
ip -n $P-sw link set lo up; ip -n $P-srv link set lo up
ip -n $P-srv link add eth0 type veth peer name Ethernet1 netns $P-sw
ip -n $P-srv link add eth1 type veth peer name Ethernet2 netns $P-sw
ip -n $P-srv link add eth2 type veth peer name Ethernet3 netns $P-sw
ip -n $P-sw link set Ethernet1 mtu 9216
ip -n $P-sw link add br0 type bridge stp_state 0
ip -n $P-sw link set Ethernet2 master br0
for l in Ethernet1 Ethernet2 Ethernet3 br0; do ip -n $P-sw link set $l up; done
ip -n $P-sw link add link Ethernet1 name Ethernet1.100 type vlan id 100 2>/dev/null && ip -n $P-sw link set Ethernet1.100 up
ip -n $P-sw addr add 192.0.2.1/24 dev br0
ip -n $P-sw addr add 10.9.9.9/32 dev lo
for l in eth0 eth1 eth2; do ip -n $P-srv link set $l up; done
SW=/run/$P-sw.sock; SRV=/run/$P-srv.sock
ip netns exec $P-sw lldpd -d -u $SW -I Ethernet1,Ethernet2 -S "lab switch sw1" -M 4 -m 10.9.9.9 >/dev/null 2>&1 &
ip netns exec $P-srv lldpd -d -r -u $SRV -I eth0,eth1,eth2 >/dev/null 2>&1 &
for i in $(seq 50); do [ -S $SW ] && [ -S $SRV ] && break; sleep 0.2; done
lc() { ip netns exec $P-sw lldpcli -u $SW "$@"; }
lc configure system hostname sw1
lc configure ports Ethernet1 lldp portidsubtype local Ethernet1 description "to srv eth0"
lc configure ports Ethernet2 lldp portidsubtype local Ethernet2 description Ethernet2
lc configure lldp tx-interval 1
for i in $(seq 100); do
  n=$(ip netns exec $P-srv lldpcli -u $SRV -f json0 show neighbors | grep -o '"name"' | wc -l)
  ip netns exec $P-srv lldpcli -u $SRV -f json0 show neighbors details | grep -q '"sw1"' && ip netns exec $P-srv lldpcli -u $SRV -f json0 show neighbors details | grep -q Ethernet2 && break; sleep 0.2; done
sleep 2
ip netns exec $P-srv lldpcli -u $SRV -f json0 show neighbors details > $OUT/json0-neighbors-details.json
ip netns exec $P-srv lldpcli -u $SRV -f json show neighbors details > $OUT/json-neighbors-details.json
ip netns exec $P-srv lldpcli -u $SRV -f json0 show neighbors details ports eth0 > $OUT/json0-one.json
ip netns exec $P-srv lldpcli -u $SRV -f json0 show neighbors details ports eth2 > $OUT/json0-none.json
ip netns exec $P-srv lldpcli -u $SRV -f keyvalue show neighbors details > $OUT/keyvalue.txt
ip netns exec $P-srv lldpcli -u $SRV show neighbors details > $OUT/plain.txt
ip netns exec $P-srv lldpcli -u $SRV -f json0 show interfaces > $OUT/json0-interfaces.json 2>&1
ip netns exec $P-srv lldpcli -u $SRV -f json0 show chassis > $OUT/json0-chassis.json 2>&1
ip netns exec $P-srv lldpcli -u $SRV -f json0 show configuration > $OUT/json0-config.json 2>&1
ip netns exec $P-srv lldpcli -u $SRV -f json0 show statistics > $OUT/json0-stats.json 2>&1
ip netns exec $P-sw lldpcli -u $SW -f json0 show neighbors details > $OUT/json0-sw-side-empty.json
kill %1 %2
sleep 0.5
ip netns del $P-sw; ip netns del $P-srv
ls -la $OUT
