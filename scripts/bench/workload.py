# Python workload for `deno task bench`: a real interpreter with a large
# heap (a dict of small objects plus a list of byte strings), then the same
# heartbeat protocol as workload.c: "ready ..." once, "gap <from_ns> <to_ns>"
# whenever two 1 ms beats are more than 5 ms apart, and "verify ok|FAIL"
# after SIGUSR1.
import signal
import sys
import time

mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
# About half the heap in a dict of int -> str, half in 4 KiB byte strings.
n_items = mib * 1024 * 1024 // 2 // 100
table = {i: "value-%d" % i for i in range(n_items)}
blobs = [bytes([(i * 7) % 251 + 1]) * 4096 for i in range(mib * 1024 * 1024 // 2 // 4096)]
requested = False


def on_usr1(signum, frame):
    global requested
    requested = True


def verify():
    for i in range(0, n_items, 997):
        if table[i] != "value-%d" % i:
            return "table[%d]" % i
    for i, b in enumerate(blobs):
        if len(b) != 4096 or b[0] != (i * 7) % 251 + 1 or b[4095] != b[0]:
            return "blob %d" % i
    return None


signal.signal(signal.SIGUSR1, on_usr1)
print("ready python items %d blobs %d" % (n_items, len(blobs)), flush=True)
last = time.time_ns()
while True:
    time.sleep(0.001)
    t = time.time_ns()
    if t - last > 5_000_000:
        print("gap %d %d" % (last, t), flush=True)
    last = t
    if requested:
        requested = False
        bad = verify()
        print("verify ok" if bad is None else "verify FAIL " + bad, flush=True)
        last = time.time_ns()
