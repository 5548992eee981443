#!/usr/bin/env python3
"""Delay from saving an event file to the platform's update, through `meetsync run`.

usage: bench/watch_latency.py [--bin target/release/meetsync] [--samples 10]

Starts `meetsync sim` (127.0.0.1) and a two-way `meetsync run` daemon whose schedule is
yearly, so only its calendar-folder watcher can explain a quick sync; then edits
SUMMARY of one file at a time and polls GET /api/v6/meeting/{id} until the platform
has the new topic. Prints median, p90 and max, and stops both processes.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

KEY = "sim-api-key"


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/meetsync")
    ap.add_argument("--samples", type=int, default=10)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="meetsync-watch-")
    sim = subprocess.Popen([a.bin, "sim", "--port", "0", "--organizers", "1", "--meetings", "20", "--api-key", KEY],
                           stdout=subprocess.PIPE, text=True)
    daemon = None
    try:
        base = None
        while base is None:
            line = sim.stdout.readline()
            if not line:
                sys.exit("simulator exited")
            m = re.match(r"listening on (\S+)", line)
            if m:
                base = m.group(1)
        accounts = get(f"{base}/_sim/accounts")
        acct = accounts[0]
        user = [u for u in acct["users"] if not u["email"].startswith("admin@")][0]
        with open(os.path.join(work, "key"), "w") as f:
            f.write(KEY)
        os.chmod(os.path.join(work, "key"), 0o600)
        cfg = os.path.join(work, "meetsync.toml")
        with open(cfg, "w") as f:
            f.write(f"""state_dir = "state"
[daemon]
jitter_secs = 0
[[pair]]
name = "bench"
direction = "two-way"
schedule = "0 0 1 1 *"
[pair.platform]
base_url = "{base}"
api_key_file = "key"
account_id = "{acct['account_id']}"
only = ["{user['email']}"]
[pair.store]
path = "cal"
[pair.sync]
past_days = 36500
future_days = 36500
""")
        log = open(os.path.join(work, "daemon.log"), "w")
        daemon = subprocess.Popen([a.bin, "run", "--config", cfg], stderr=log)
        coll = os.path.join(work, "cal", user["email"].lower())
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.isdir(coll) and len([n for n in os.listdir(coll) if n.endswith(".ics")]) >= 10:
                break
            time.sleep(0.1)
        time.sleep(3)  # let the first job and its own writes settle
        def pushable(n):
            # recurring series with exceptions cannot be held by the platform: not pushed
            with open(os.path.join(coll, n)) as f:
                text = f.read()
            return "RRULE" not in text[text.find("BEGIN:VEVENT"):]
        files = sorted(n for n in os.listdir(coll) if re.fullmatch(r"[0-9a-f]{24}\.ics", n) and pushable(n))
        delays = []
        for i, name in enumerate(files[: a.samples]):
            mid = name[:-4]
            path = os.path.join(coll, name)
            with open(path, newline="") as f:
                text = f.read()
            topic = f"edited {i} at {time.time():.3f}"
            text = re.sub(r"^SUMMARY[;:][^\r\n]*(\r?\n[ \t][^\r\n]*)*", f"SUMMARY:{topic}", text, count=1, flags=re.M)
            t0 = time.time()
            with open(path, "w", newline="") as f:
                f.write(text)
            while True:
                d = get(f"{base}/api/v6/meeting/{mid}", {"X-API-KEY": KEY, "X-USER-ID": user["id"]})
                if d.get("data", {}).get("topic") == topic:
                    delays.append(time.time() - t0)
                    break
                if time.time() - t0 > 30:
                    sys.exit(f"edit of {name} did not reach the platform in 30 s; daemon log: {work}/daemon.log")
                time.sleep(0.05)
            time.sleep(2.0)  # the next edit starts from a quiet folder
        delays.sort()
        p90 = delays[min(len(delays) - 1, int(0.9 * len(delays)))]
        print(json.dumps({"samples": len(delays), "median_s": round(statistics.median(delays), 3),
                          "p90_s": round(p90, 3), "max_s": round(max(delays), 3)}))
    finally:
        for p in (daemon, sim):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
