#!/usr/bin/env python3
# Sends hand-built LLDPDUs out of an interface (run inside a netns).
import socket, struct, sys

def tlv(t, v):
    return struct.pack("!H", (t << 9) | len(v)) + v

def org(oui, sub, v):
    return tlv(127, bytes.fromhex(oui) + bytes([sub]) + v)

def mgmt_v4(a, ifindex):
    addr = bytes([1]) + socket.inet_aton(a)
    return tlv(8, bytes([len(addr)]) + addr + bytes([2]) + struct.pack("!I", ifindex) + bytes([0]))

def mgmt_v6(a, ifindex):
    addr = bytes([2]) + socket.inet_pton(socket.AF_INET6, a)
    return tlv(8, bytes([len(addr)]) + addr + bytes([2]) + struct.pack("!I", ifindex) + bytes([0]))

def frame(src, kind):
    t = b""
    if kind == "arista":
        t += tlv(1, bytes([4]) + bytes.fromhex("001c73aabb07"))
        t += tlv(2, bytes([5]) + b"Ethernet48")
        t += tlv(3, struct.pack("!H", 120))
        t += tlv(4, b"srv42 eth0")
        t += tlv(5, b"leaf7.dc1")
        t += tlv(6, b"Arista Networks EOS version 4.30.1F running on an Arista DCS-7050SX3-48YC8")
        t += tlv(7, struct.pack("!HH", 0x0014, 0x0014))
        t += mgmt_v4("10.0.0.7", 999001)
        t += mgmt_v6("2001:db8::7", 999001)
        t += org("0080c2", 1, struct.pack("!H", 10))
        t += org("0080c2", 3, struct.pack("!HB", 100, 3) + b"wan")
        t += org("0080c2", 3, struct.pack("!HB", 200, 3) + b"san")
        t += org("00120f", 3, bytes([0x03]) + struct.pack("!I", 1000001))
        t += org("00120f", 4, struct.pack("!H", 9236))
    elif kind == "small-mfs":
        t += tlv(1, bytes([7]) + b"tor-b")
        t += tlv(2, bytes([3]) + bytes.fromhex("020000000b31"))
        t += tlv(3, struct.pack("!H", 90))
        t += tlv(5, b"tor-b")
        t += org("00120f", 4, struct.pack("!H", 1518))
    t += tlv(0, b"")
    dst = bytes.fromhex("0180c200000e")
    return dst + src + struct.pack("!H", 0x88cc) + t

ifname, kind = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
src = open(f"/sys/class/net/{ifname}/address").read().strip()
s.send(frame(bytes.fromhex(src.replace(":", "")), kind))
