#!/usr/bin/env python3
"""Coordinator failover: 3 minikv-coord + 3 minikv-volume on loopback; a PUT loop (4 writers, keep-alive) through
the coordinators that survive; SIGKILL the Raft leader K times; print per kill the time from the kill to the first
acknowledgement of a PUT sent after the kill. Build first (dotnet build src/MiniKV.Coordinator -c Release; same for src/MiniKV.Volume).
Usage: bench/scripts/coord-failover.py [ROOT=repo] [KILLS=8] [BASEPORT=18000] (ports BASEPORT..BASEPORT+131);
docs/benchmarks.md, "Coordinator failover". Data stays in the printed WORK directory."""
import http.client, json, os, signal, subprocess, sys, tempfile, threading, time
args = sys.argv[1:] + [None] * 3
root = args[0] or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
kills, base = int(args[1] or 8), int(args[2] or 18000)
coord = f"{root}/src/MiniKV.Coordinator/bin/Release/net10.0/minikv-coord.dll"
vol = f"{root}/src/MiniKV.Volume/bin/Release/net10.0/minikv-volume.dll"
W = tempfile.mkdtemp(prefix="coord-failover.")
cports = {f"c{i}": (base + 10 * i, base + 10 * i + 1) for i in range(1, 4)}
procs = {}
def start(name):
    h, g = cports[name]
    peers = ",".join(f"127.0.0.1:{p[1]}" for n, p in cports.items() if n != name)
    args = ["dotnet", coord, "serve", "--id", name, "--bind", f"127.0.0.1:{h}", "--grpc", f"127.0.0.1:{g}",
            "--db", f"{W}/{name}", "--peers", peers]
    procs[name] = subprocess.Popen(args, stdout=open(f"{W}/{name}.log", "a"), stderr=subprocess.STDOUT)
coords = ",".join(f"http://127.0.0.1:{p[0]}" for p in cports.values())
for name in cports: start(name)
for i in range(1, 4):
    h = base + 100 + 10 * i
    procs[f"v{i}"] = subprocess.Popen(["dotnet", vol, "serve", "--id", f"vol-{i}", "--bind", f"127.0.0.1:{h}",
        "--grpc", f"127.0.0.1:{h+1}", "--data", f"{W}/v{i}/data", "--wal", f"{W}/v{i}/wal", "--coordinators", coords],
        stdout=open(f"{W}/v{i}.log", "a"), stderr=subprocess.STDOUT)
def get(port, path):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1); c.request("GET", path); r = c.getresponse()
        return r.status, r.read()
    except Exception: return 0, b""
def leader():
    for n, (h, _) in cports.items():
        s, b = get(h, "/admin/status")
        if s == 200:
            try:
                l = json.loads(b).get("leader")
                if l: return l
            except Exception: pass
    return None
def wait(cond, secs):
    t = time.time()
    while time.time() - t < secs:
        if cond(): return True
        time.sleep(0.05)
    return False
acks = []; lock = threading.Lock(); stop = False; target = {"avoid": None}
def writer(wid):
    seq = 0; conns = {}
    while not stop:
        names = [n for n in cports if n != target["avoid"]]
        n = names[(wid + seq) % len(names)]
        try:
            c = conns.get(n) or http.client.HTTPConnection("127.0.0.1", cports[n][0], timeout=2); conns[n] = c
            began = time.monotonic()
            c.request("PUT", f"/kv/w{wid}-{seq}", body=b"x" * 100); r = c.getresponse(); r.read()
            if r.status in (200, 201):
                with lock: acks.append((began, time.monotonic()))
            else: time.sleep(0.002)
        except Exception:
            conns.pop(n, None); time.sleep(0.002)
        seq += 1
try:
    assert wait(lambda: all(get(h, "/health/ready")[0] == 200 for h, _ in cports.values()) and leader(), 90), "not ready"
    ws = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(4)]
    [w.start() for w in ws]
    assert wait(lambda: len(acks) > 200, 60), "no writes"
    results = []
    for k in range(kills):
        time.sleep(3)
        l = leader(); target["avoid"] = l
        time.sleep(0.3)
        t0 = time.monotonic(); os.kill(procs[l].pid, signal.SIGKILL)
        ok = wait(lambda: any(b > t0 for b, _ in acks[-50:]), 30)
        first = min((e for b, e in acks[-400:] if b > t0), default=None)
        ms = (first - t0) * 1000 if first else float("nan")
        results.append(ms); print(f"kill {k+1}: leader {l} -> first PUT acknowledged {ms:.0f} ms after the kill", flush=True)
        procs[l].wait(); start(l); target["avoid"] = None
        wait(lambda: get(cports[l][0], "/health/ready")[0] == 200, 60)
    rs = sorted(r for r in results if r == r)
    print(f"RESULT kills={kills} median_ms={rs[len(rs)//2]:.0f} max_ms={rs[-1]:.0f} all={' '.join(f'{r:.0f}' for r in results)}")
finally:
    stop = True
    for p in procs.values():
        try: p.kill()
        except Exception: pass
    print("WORK", W)
