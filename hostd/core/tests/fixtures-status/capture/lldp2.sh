#!/bin/bash
set -u
OUT=/work/status-capture/lldp
P=stcap2$$
ip netns add $P-sw; ip netns add $P-srv
ip -n $P-srv link add eth0 type veth peer name p0 netns $P-sw
ip -n $P-srv link add eth1 type veth peer name p1 netns $P-sw
ip -n $P-srv link set eth0 mtu 9000
for l in p0 p1; do ip -n $P-sw link set $l up; done
for l in eth0 eth1; do ip -n $P-srv link set $l up; done
SRV=/run/$P-srv.sock
ip netns exec $P-srv lldpd -d -r -u $SRV -I eth0,eth1 >/dev/null 2>&1 &
for i in $(seq 50); do [ -S $SRV ] && break; sleep 0.2; done
sleep 1
ip netns exec $P-sw python3 /work/status-capture/inject.py p0 arista
ip netns exec $P-sw python3 /work/status-capture/inject.py p1 small-mfs
sleep 1
ip netns exec $P-srv lldpcli -u $SRV -f json0 show neighbors details > $OUT/json0-rich.json
ip netns exec $P-srv lldpcli -u $SRV show neighbors details > $OUT/plain-rich.txt
ip netns exec $P-srv lldpcli -u $SRV -f json show neighbors details > $OUT/json-rich.json
kill %1; sleep 0.3
ip netns del $P-sw; ip netns del $P-srv
