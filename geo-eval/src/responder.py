"""Delaying ICMP echo responder for the geolocation harness (vantage_engines::eval::netns).

Runs inside one target namespace. It opens a TUN device, routes the target address(es)
into it and answers every ICMP echo request after the delay configured for the
request's *source* (the probe): the ground-truth RTT of that probe-target path. The
kernel here has no sch_netem, so the delay comes from user space, like
probe-agent/tests/tun_responder.py. Standard library only.

argv[1]: JSON {"dev": "gtun0", "addrs": ["10.204.0.1"], "delays": {"10.202.0.2": 12.5},
               "jitter_ms": 0.2, "jitter": "uniform", "seed": 1}
jitter is per packet: uniform in 0..jitter_ms, or "exponential" with mean jitter_ms.
Requests from sources not in "delays" are dropped. Prints "ready" once routed.
"""
import fcntl, heapq, json, os, random, struct, subprocess, sys, threading, time

cfg = json.loads(sys.argv[1])
dev = cfg["dev"]
delays = {k: float(v) / 1000.0 for k, v in cfg["delays"].items()}
jitter = float(cfg.get("jitter_ms", 0.0)) / 1000.0
rng = random.Random(cfg.get("seed", 1))
if cfg.get("jitter") == "exponential":
    draw = lambda: rng.expovariate(1.0 / jitter) if jitter > 0 else 0.0
else:
    draw = lambda: jitter * rng.random()
# Forward what arrives on the veth into the TUN device, and the replies back out.
with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
    f.write("1")
fd = os.open("/dev/net/tun", os.O_RDWR)
# TUNSETIFF with IFF_TUN | IFF_NO_PI
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", dev.encode(), 0x0001 | 0x1000))
cmds = [["ip", "link", "set", dev, "up"]]
cmds += [["ip", "route", "add", a + "/32", "dev", dev] for a in cfg["addrs"]]
for c in cmds:
    subprocess.run(c, check=True)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


queue, cv = [], threading.Condition()


def sender():
    while True:
        with cv:
            while not queue:
                cv.wait()
            due, pkt = queue[0]
            now = time.monotonic()
            if due - now > 0.0005:
                cv.wait(due - now - 0.0005)
                continue
            heapq.heappop(queue)
        while time.monotonic() < due:
            pass
        os.write(fd, pkt)


threading.Thread(target=sender, daemon=True).start()
print("ready", flush=True)
while True:
    p = os.read(fd, 65535)
    t = time.monotonic()
    if len(p) < 28 or p[0] >> 4 != 4 or p[9] != 1:
        continue
    ihl = (p[0] & 15) * 4
    src = ".".join(str(b) for b in p[12:16])
    delay = delays.get(src)
    if p[ihl] != 8 or delay is None:
        continue
    icmp = bytearray(p[ihl:])
    icmp[0] = 0
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", csum(bytes(icmp)))
    ip = bytearray(p[:ihl])
    ip[12:16], ip[16:20] = p[16:20], p[12:16]
    ip[8] = 64
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    with cv:
        heapq.heappush(queue, (t + delay + draw(), bytes(ip) + bytes(icmp)))
        cv.notify()
