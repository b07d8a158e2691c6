#!/bin/bash
# json0-watch.txt: what `lldpcli -f json0 watch` prints while a neighbour
# goes away (its port down) and comes back. Host kernel, veth, lldpd 1.0.16.
set -u
OUT=${OUT:-/work/status-capture/lldp}
P=stw$$
ip netns add $P-a; ip netns add $P-b
ip -n $P-a link add e0 type veth peer name e1 netns $P-b
ip -n $P-a link set e0 up; ip -n $P-b link set e1 up
A=/run/$P-a.sock; B=/run/$P-b.sock
ip netns exec $P-a lldpd -u $A -I e0
ip netns exec $P-b lldpd -u $B -I e1
for i in $(seq 50); do [ -S $A ] && [ -S $B ] && break; sleep 0.2; done
ip netns exec $P-b lldpcli -u $B configure lldp tx-interval 1
ip netns exec $P-b lldpcli -u $B configure system hostname sw1
ip netns exec $P-b lldpcli -u $B configure ports e1 lldp portidsubtype local Ethernet1 description Ethernet1
sleep 3
timeout 9 ip netns exec $P-a lldpcli -u $A -f json0 watch > $OUT/json0-watch.txt &
sleep 2
ip -n $P-b link set e1 down   # lldp-deleted about 1 s later
sleep 3
ip -n $P-b link set e1 up     # lldp-added, then lldp-updated
wait
ip netns pids $P-a | xargs -r kill; ip netns pids $P-b | xargs -r kill
ip netns del $P-a; ip netns del $P-b
