#!/usr/bin/env python3
"""How long a reload that adds (then removes) one app domain takes, and the
longest silence every other app's UDP probe stream sees meanwhile.

    sudo tests/measure/reload.py [--apps 8] [--rounds 5] [--nicguard build/nicguard] [--baseline]

A lab of its own (removed on exit); every app gets a 1000 pps echoed
stream from the external host; each round adds app `extra` to the config,
runs `nicguard reload`, waits until `status` shows it served, and removes it
again. Not run by CI: it prints figures, it asserts nothing.
"""
import argparse, json, os, subprocess, sys, time

p = argparse.ArgumentParser()
p.add_argument("--apps", type=int, default=8)
p.add_argument("--rounds", type=int, default=5)
p.add_argument("--nicguard", default="build/nicguard")
p.add_argument("--baseline", action="store_true", help="the same rounds with no reload: the streams' own noise")
a = p.parse_args()
ng = os.path.abspath(a.nicguard)
sfx = f"rm{os.getpid() % 100000}"
run = lambda *cmd, **kw: subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)

run(ng, "lab", "up", "--apps", str(a.apps), "--name", sfx)
procs = []
try:
    base = f"/run/nicguard/lab-{sfx}"
    config = f"{base}/nicguard.toml"
    sock = f"{base}/state/control.sock"
    original = open(config).read()
    extra = (f'\n[[app]]\nname = "extra"\nnetns = "ng-{sfx}-extra"\nmac = "02:ee:ee:00:09:01"\n'
             f'ipv4 = ["10.99.0.250/24"]\nrx_probe_target = "10.99.0.1"\n')
    duration = 3 + a.rounds * 2.5
    for i in range(1, a.apps + 1):
        procs.append(subprocess.Popen([ng, "probe", "echo", "--netns", f"ng-{sfx}-app{i}", "--duration", str(duration + 2)]))
    time.sleep(0.5)
    streams = [subprocess.Popen([ng, "probe", "udp", "--netns", f"ng-{sfx}-ext", "--to", f"10.99.0.{10 + i}",
                                 "--pps", "1000", "--duration", str(duration), "--json"], stdout=subprocess.PIPE, text=True)
               for i in range(1, a.apps + 1)]
    time.sleep(1.5)
    adds, removes, served = [], [], []
    for r in range(a.rounds if not a.baseline else 0):
        open(config, "w").write(original + extra)
        t0 = time.monotonic()
        adds.append(json.loads(run(ng, "reload", "-s", sock, "--json").stdout)["took_ms"])
        while True:
            apps = json.loads(run(ng, "status", "-s", sock, "--json").stdout)["apps"]
            if any(x["name"] == "extra" and isinstance(x.get("active_driver"), str) for x in apps):
                break
            time.sleep(0.002)
        served.append((time.monotonic() - t0) * 1000)
        time.sleep(0.5)
        open(config, "w").write(original)
        removes.append(json.loads(run(ng, "reload", "-s", sock, "--json").stdout)["took_ms"])
        time.sleep(0.5)
    if a.baseline:
        time.sleep(a.rounds * 2.5)
    gaps, lost = [], 0
    for s in streams:
        out, _ = s.communicate(timeout=duration + 30)
        j = json.loads(out)
        gaps.append(round(j.get("interruption_ms", 0), 2))
        lost += j.get("lost", 0)
    events = [json.loads(l) for l in open(f"{base}/state/events.jsonl")]
    detections = sum(1 for e in events if e.get("event") == "detect")
    print(json.dumps({"apps": a.apps, "rounds": a.rounds, "reload_add_ms": adds, "reload_remove_ms": removes,
                      "add_to_served_ms": [round(x, 1) for x in served], "other_apps_longest_gap_ms": gaps,
                      "other_apps_lost": lost, "detections": detections}, indent=1))
finally:
    for pr in procs:
        pr.kill()
    subprocess.run([ng, "lab", "down", "--name", sfx], capture_output=True)
