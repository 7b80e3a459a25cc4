"""Echo responder on a TUN device (vtun0, 10.201.9.1/24): answers ICMP echo requests
to any 10.201.9.x after exactly argv[1] ms, dropping an argv[2] fraction. Used by the
netns tests and the rtt_accuracy example where the kernel has no sch_netem."""
import fcntl, heapq, os, random, struct, subprocess, sys, threading, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"vtun0", 0x0001 | 0x1000))
subprocess.run("ip addr add 10.201.9.1/24 dev vtun0 && ip link set vtun0 up", shell=True, check=True)
delay, loss = float(sys.argv[1]) / 1000.0, float(sys.argv[2])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
queue, cv = [], threading.Condition()
def sender():
    while True:
        with cv:
            while not queue: cv.wait()
            due, pkt = queue[0]
            now = time.monotonic()
            if due > now:
                cv.wait(max(0.0, due - now - 0.002))
                continue
            heapq.heappop(queue)
        while time.monotonic() < due: pass
        os.write(fd, pkt)
threading.Thread(target=sender, daemon=True).start()
print("ready", flush=True)
while True:
    p = os.read(fd, 65535)
    if p[0] >> 4 != 4 or p[9] != 1: continue
    ihl = (p[0] & 15) * 4
    if p[ihl] != 8 or random.random() < loss: continue
    t = time.monotonic()
    icmp = bytearray(p[ihl:]); icmp[0] = 0; icmp[2:4] = b"\0\0"; icmp[2:4] = struct.pack("!H", csum(bytes(icmp)))
    ip = bytearray(p[:ihl]); ip[12:16], ip[16:20] = p[16:20], p[12:16]; ip[8] = 64; ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    with cv:
        heapq.heappush(queue, (t + delay, bytes(ip) + bytes(icmp))); cv.notify()
