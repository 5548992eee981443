#!/usr/bin/env python3
"""meetsync vs vdirsyncer 0.21.0, in one run, on the same simulated feeds.

Driven by `bench/run` (which builds meetsync and the vdirsyncer venv); can be
run alone with `--bin` and `--vdirsyncer`. Standard library only.

For each size N and each run it starts a fresh `meetsync sim` (1 organizer,
N meetings, fixed seed) on 127.0.0.1, optionally pads every meeting's
description with a realistic dial-in block (so a 10k feed is ~15 MB, as the
project's targets assume), and then, on the very same feed, for both tools:

  first      first sync into an empty vdir
  nochange   resync, nothing changed on the platform
  mutation   after K changed, K deleted, K added on the platform

Every measured command runs as a child process: wall time (perf_counter),
user+sys CPU and peak RSS from wait4()'s rusage (what GNU time reports), the
vdir files created/rewritten/deleted (inode or mtime_ns changed, compared
before/after), and the simulator's request counters (/_sim/counters, reset
before each command). `sync(2)` runs before each command so that neither
tool pays for the other's dirty pages (meetsync calls syncfs).

Every server started here is stopped in `finally` and when this process
dies (PR_SET_PDEATHSIG).
"""

import argparse
import ctypes
import http.client
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

ADD_TOPICS = [
    "Kick-off — Projekt Ähre",
    "Weekly sync",
    "Réunion budget, T4",
    "周会 / weekly",
    "Customer call: ACME, Inc.",
    "Design review; v2",
]
ADD_INVITEES = [
    "Zoë Müller <zoe.mueller@example.test>",
    "José Núñez <jose.nunez@example.test>",
    "Smith, John <john.smith@example.test>",
    "Sarah O'Connor <sarah.oconnor@example.test>",
    "李雷 <li.lei@example.test>",
]
ZONES = ["Europe/Zurich", "Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"]


# ---------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: the child gets SIGTERM when this driver dies.
    _libc.prctl(1, signal.SIGTERM, 0, 0, 0)


TIME = "/usr/bin/time"


def measure(cmd, env=None, log=None):
    """Run cmd under GNU time; return dict(wall, user, sys, cpu, rss_kib, rc).

    Peak RSS comes from GNU time's %M: a child forked straight from this
    driver would report the driver's own RSS (Linux keeps the pre-exec
    high-water mark in ru_maxrss). CPU comes from wait4() on `time`, which
    includes the measured command (reaped by `time`) at µs resolution; wall
    is perf_counter around the whole.
    """
    out = open(log, "ab") if log else subprocess.DEVNULL
    rfile = os.path.join(os.path.dirname(log) if log else "/tmp", ".time-%d" % os.getpid())
    try:
        if log:
            out.write(("\n$ " + " ".join(cmd) + "\n").encode())
            out.flush()
        t0 = time.perf_counter()
        p = subprocess.Popen([TIME, "-f", "%e %U %S %M %x", "-o", rfile, "--"] + cmd, env=env,
                             stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                             preexec_fn=_die_with_parent)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        with open(rfile) as f:
            fields = f.read().split()
        os.unlink(rfile)
    finally:
        if log:
            out.close()
    return {
        "wall": wall,
        "user": ru.ru_utime,
        "sys": ru.ru_stime,
        "cpu": ru.ru_utime + ru.ru_stime,
        "rss_kib": int(fields[-2]),
        "gnu_time": " ".join(fields),
        "rc": p.returncode,
    }


class Sim:
    """A `meetsync sim` on 127.0.0.1, stopped by stop() (and on our death)."""

    def __init__(self, binary, organizers, meetings, seed, log):
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            [binary, "sim", "--port", "0", "--organizers", str(organizers),
             "--meetings", str(meetings), "--seed", str(seed)],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        info = {}
        deadline = time.time() + 600
        while "organizers" not in info:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError("simulator exited before it was ready (see %s)" % log)
            if time.time() > deadline:
                raise RuntimeError("simulator not ready after 600 s")
            k, _, v = line.strip().partition(": ")
            if line.startswith("listening on "):
                info["base"] = line.split()[-1]
            elif k in ("api key", "account id", "organizers"):
                info[k] = v
        self.base = info["base"]
        self.api_key = info["api key"]
        self.account = info["account id"]
        u = urlparse(self.base)
        self.host, self.port = u.hostname, u.port
        assert self.host == "127.0.0.1", self.base
        self._conn = None
        self.users = self.call("GET", "/_sim/accounts")[0]["users"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def conn(self):
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        return self._conn

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):
            try:
                c = self.conn()
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, ConnectionError):
                self._conn = None
                if attempt == 2:
                    raise

    def call(self, method, path, body=None):
        status, raw = self.request(method, path, body)
        if status != 200:
            raise RuntimeError("%s %s -> %s %s" % (method, path, status, raw[:200]))
        return json.loads(raw) if raw else None

    def feed(self, ics_path):
        status, raw = self.request("GET", ics_path)
        if status != 200:
            raise RuntimeError("feed -> %s" % status)
        return raw

    def counters(self):
        return self.call("GET", "/_sim/counters")

    def reset(self):
        self.call("POST", "/_sim/counters/reset")


# ---------------------------------------------------------------- feeds

def unfold(body):
    return body.replace(b"\r\n ", b"").replace(b"\r\n\t", b"").split(b"\r\n")


def unescape(v):
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            n = v[i + 1]
            out.append("\n" if n in "nN" else n)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def masters(body):
    """[(uid, topic, agenda, is_recurring)] of the feed's master VEVENTs, in order."""
    res, cur = [], None
    for line in unfold(body):
        if line == b"BEGIN:VEVENT":
            cur = {}
        elif line == b"END:VEVENT":
            if cur is not None and "rid" not in cur:
                desc = cur.get("desc", "")
                agenda = desc.rsplit("\n\nJoin the meeting: ", 1)[0] \
                    if "\n\nJoin the meeting: " in desc else ""
                res.append((cur["uid"], cur.get("topic", ""), agenda, "rrule" in cur))
            cur = None
        elif cur is not None:
            name, _, value = line.decode("utf-8").partition(":")
            key = name.split(";")[0]
            if key == "UID":
                cur["uid"] = value
            elif key == "SUMMARY":
                cur["topic"] = unescape(value)
            elif key == "DESCRIPTION":
                cur["desc"] = unescape(value)
            elif key == "RECURRENCE-ID":
                cur["rid"] = True
            elif key == "RRULE":
                cur["rrule"] = True
    return res


def feed_stats(body):
    lines = body.split(b"\r\n")
    return {
        "bytes": len(body),
        "crlf_only": body.count(b"\n") == body.count(b"\r\n"),
        "max_line_octets": max(len(x) for x in lines),
        "folded_lines": sum(1 for x in lines if x.startswith(b" ")),
        "vevents": body.count(b"BEGIN:VEVENT"),
        "uids": len(set(re.findall(rb"\r\nUID:([^\r]*)", body))),
        "rrule": body.count(b"\r\nRRULE:"),
        "exdate": body.count(b"\r\nEXDATE"),
        "recurrence_id": body.count(b"\r\nRECURRENCE-ID"),
        "vtimezone": body.count(b"BEGIN:VTIMEZONE"),
        "tzid_dtstart": body.count(b"\r\nDTSTART;TZID="),
        "organizer": body.count(b"\r\nORGANIZER;CN=\""),
        "attendee_quoted_cn": body.count(b"\r\nATTENDEE;CN=\""),
        "join_url": body.count(b"\r\nURL:https://"),
        "non_ascii_bytes": sum(1 for b in body if b > 127),
    }


def dial_in(rng, n):
    """A realistic dial-in block, as invitations of web meeting platforms carry."""
    code = "%04d %03d %04d" % (rng.randrange(10000), rng.randrange(1000), rng.randrange(10000))
    pw = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789") for _ in range(8))
    return (
        "──────────\n"
        "Join from a video system or app: %s@video.meeting.example.test\n"
        "Join by phone:\n"
        "+1 202 555 %04d United States Toll\n"
        "+44 20 7946 %04d United Kingdom Toll\n"
        "+33 1 70 70 %02d %02d France (payant)\n"
        "Meeting number (access code): %s\n"
        "Meeting password: %s (%08d from phones)\n"
        "Global call-in numbers: https://meeting.example.test/globalcallin?MTID=m%016x\n"
        "Besoin d'aide ? Hilfe? ¿Ayuda?"
    ) % (code.replace(" ", ""), rng.randrange(10000), rng.randrange(10000),
         rng.randrange(100), rng.randrange(100), code, pw, rng.randrange(10**8), rng.getrandbits(64))


def pad_feed(sim, ics_path, seed):
    """Appends a dial-in block to every meeting's agenda (PATCH /_sim/meetings/{id})."""
    rng = random.Random("pad-%d" % seed)
    for n, (uid, _topic, agenda, _rec) in enumerate(masters(sim.feed(ics_path))):
        new = (agenda + "\n\n" if agenda else "") + dial_in(rng, n)
        sim.call("PATCH", "/_sim/meetings/" + uid, {"agenda": new})


def mutate(sim, user_id, ics_path, k, seed, pad):
    """K changed (new topic), K deleted, K added; deterministic for (feed, seed)."""
    rng = random.Random("mutate-%d" % seed)
    live = masters(sim.feed(ics_path))
    picked = rng.sample(range(len(live)), 2 * k)
    for i in picked[:k]:
        uid, topic, _agenda, _rec = live[i]
        sim.call("PATCH", "/_sim/meetings/" + uid, {"topic": topic + " — moved to room Ø"})
    for i in picked[k:]:
        sim.call("DELETE", "/_sim/meetings/" + live[i][0])
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    for j in range(k):
        start = today + timedelta(days=rng.randrange(-30, 300), hours=rng.randrange(7, 19),
                                  minutes=15 * rng.randrange(4))
        spec = {
            "topic": rng.choice(ADD_TOPICS),
            "agenda": "1. Status\n2. Risks; blockers\n3. Next steps, owners"
                      + ("\n\n" + dial_in(rng, j) if pad else ""),
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=rng.choice([30, 45, 60]))).isoformat(),
            "timezone": rng.choice(ZONES),
            "invited": rng.sample(ADD_INVITEES, rng.randrange(0, 4)),
        }
        sim.call("POST", "/_sim/meetings", {"user_id": user_id, "spec": spec})


# ---------------------------------------------------------------- vdirs

def snapshot(root):
    snap = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith(".ics"):
                p = os.path.join(dirpath, f)
                st = os.stat(p)
                snap[p] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return snap


def diff(before, after):
    created = sum(1 for p in after if p not in before)
    rewritten = sum(1 for p, v in after.items() if p in before and before[p][:2] != v[:2])
    deleted = sum(1 for p in before if p not in after)
    return {"created": created, "rewritten": rewritten, "deleted": deleted,
            "written": created + rewritten, "files": len(after)}


def events_in(root):
    """Sorted digests of each file's VEVENTs without their UID lines.

    vdirsyncer's http storage replaces every UID by a hash of the item
    (`_ignore_uids`, not configurable in 0.21.0) and copies every VTIMEZONE
    of the feed into each file, so UIDs and VTIMEZONEs are left out."""
    import hashlib
    digests = []
    for p in snapshot(root):
        with open(p, "rb") as f:
            lines = unfold(f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        events, cur = [], None
        for line in lines:
            if line == b"BEGIN:VEVENT":
                cur = []
            elif line == b"END:VEVENT":
                events.append(b"\n".join(sorted(cur)))
                cur = None
            elif cur is not None and not line.startswith(b"UID:"):
                cur.append(line)
        digests.append(hashlib.sha256(b"\0".join(sorted(events))).hexdigest())
    return sorted(digests)


# ---------------------------------------------------------------- tools

MAX_RPS = None  # --max-rps: written as [pair.platform] max_requests_per_second when set


def meetsync_config(d, sim, only):
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "meetsync.toml")
    with open(cfg, "w") as f:
        f.write('state_dir = "%s/state"\n\n[[pair]]\nname = "bench"\n\n'
                '[pair.platform]\nkind = "web-meeting-v6"\nbase_url = "%s"\n'
                'api_key_env = "MEETSYNC_BENCH_API_KEY"\naccount_id = "%s"\n'
                % (d, sim.base, sim.account))
        if only:
            f.write("only = [%s]\n" % ", ".join('"%s"' % o for o in only))
        if MAX_RPS is not None:
            f.write("max_requests_per_second = %s\n" % MAX_RPS)
        f.write('\n[pair.store]\nkind = "vdir"\npath = "%s/calendars"\n\n'
                '[pair.sync]\npast_days = 36500\nfuture_days = 36500\n' % d)
    return cfg, os.path.join(d, "calendars")


def vdirsyncer_config(d, feed_url):
    os.makedirs(os.path.join(d, "status"), exist_ok=True)
    os.makedirs(os.path.join(d, "calendar"), exist_ok=True)
    cfg = os.path.join(d, "vdirsyncer.conf")
    with open(cfg, "w") as f:
        f.write('[general]\nstatus_path = "%s/status/"\n\n'
                '[pair bench]\na = "bench_remote"\nb = "bench_local"\ncollections = null\n'
                'conflict_resolution = "a wins"\n\n'
                '[storage bench_remote]\ntype = "http"\nurl = "%s"\n\n'
                '[storage bench_local]\ntype = "filesystem"\npath = "%s/calendar/"\nfileext = ".ics"\n'
                % (d, feed_url, d))
    return cfg, os.path.join(d, "calendar")


class Tool:
    def __init__(self, name, cmd, vdir, env, log):
        self.name, self.cmd, self.vdir, self.env, self.log = name, cmd, vdir, env, log

    def run(self, sim):
        os.sync()
        sim.reset()
        before = snapshot(self.vdir)
        m = measure(self.cmd, env=self.env, log=self.log)
        c = sim.counters()
        after = snapshot(self.vdir)
        if m["rc"] != 0:
            raise RuntimeError("%s exited %s (see %s)" % (self.name, m["rc"], self.log))
        req = c.get("requests", {})
        m.update(diff(before, after))
        m.update({"requests": sum(req.values()), "feed_requests": req.get("feed", 0),
                  "lookups": req.get("admin_lookup", 0),
                  "feed_200": c["feed_200"], "feed_304": c["feed_304"]})
        return m


# ---------------------------------------------------------------- driver

def log_line(msg):
    print(msg, file=sys.stderr, flush=True)


def compare_run(a, n, run, tools_wanted, results):
    """One size, one run: a fresh simulator, the three phases for each tool."""
    work = os.path.join(a.work, "n%d" % n, "run%d" % run)
    os.makedirs(work)
    sim = Sim(a.bin, 1, n, a.seed, os.path.join(work, "sim.log"))
    try:
        org = next(u for u in sim.users if u["email"] != "admin@meeting.example.test")
        if a.pad:
            t0 = time.time()
            pad_feed(sim, org["ics_path"], a.seed)
            log_line("  padded %d meetings in %.1f s" % (n, time.time() - t0))
        body = sim.feed(org["ics_path"])  # renders and caches it: not on anyone's clock
        if run == 0:
            results["feeds"][str(n)] = feed_stats(body)
        env = dict(os.environ, MEETSYNC_BENCH_API_KEY=sim.api_key)
        tools = []
        if "meetsync" in tools_wanted:
            cfg, vdir = meetsync_config(os.path.join(work, "meetsync"), sim, [org["email"]])
            tools.append(Tool("meetsync", [a.bin, "-c", cfg, "sync", "--once"], vdir, env,
                              os.path.join(work, "meetsync.log")))
        if "vdirsyncer" in tools_wanted:
            cfg, vdir = vdirsyncer_config(os.path.join(work, "vdirsyncer"), sim.base + org["ics_path"])
            vlog = os.path.join(work, "vdirsyncer.log")
            d = measure([a.vdirsyncer, "-c", cfg, "discover"], env=env, log=vlog)
            if d["rc"] != 0:
                raise RuntimeError("vdirsyncer discover failed (see %s)" % vlog)
            results["rows"].append(dict(d, n=n, run=run, tool="vdirsyncer", phase="discover"))
            tools.append(Tool("vdirsyncer", [a.vdirsyncer, "-c", cfg, "sync"], vdir, env, vlog))
        if run % 2 == 1:
            tools.reverse()  # alternate who goes first
        counts = {}
        for phase in ("first", "nochange", "mutation"):
            if phase == "mutation":
                mutate(sim, org["id"], org["ics_path"], a.mutate, a.seed * 100 + run, a.pad)
                sim.feed(org["ics_path"])  # render the new feed before the clocks start
            for t in tools:
                m = t.run(sim)
                m.update(n=n, run=run, tool=t.name, phase=phase)
                results["rows"].append(m)
                counts[(phase, t.name)] = m["files"]
                log_line("  n=%-6d run %d %-8s %-10s wall %7.3f s  cpu %7.3f s  rss %6.1f MiB  "
                         "written %5d deleted %4d  req %d (304: %d)"
                         % (n, run, phase, t.name, m["wall"], m["cpu"], m["rss_kib"] / 1024,
                            m["written"], m["deleted"], m["requests"], m["feed_304"]))
        expect = {"first": n, "nochange": n, "mutation": n}
        for (phase, tool), files in counts.items():
            if files != expect[phase]:
                results["problems"].append("n=%d run %d: %s has %d files after %s, expected %d"
                                           % (n, run, tool, files, phase, expect[phase]))
        if len(tools) == 2:
            u = [events_in(t.vdir) for t in tools]
            same = u[0] == u[1]
            results["checks"].append({"n": n, "run": run, "files": [len(x) for x in u],
                                      "same_events": same})
            if not same:
                results["problems"].append("n=%d run %d: the two vdirs hold different events "
                                           "(%d vs %d files)" % (n, run, len(u[0]), len(u[1])))
    finally:
        sim.stop()


def scale_run(a, orgs, per_org, results):
    work = os.path.join(a.work, "scale-%dx%d" % (orgs, per_org))
    os.makedirs(work)
    t0 = time.time()
    sim = Sim(a.bin, orgs, per_org, a.seed, os.path.join(work, "sim.log"))
    log_line("  simulator with %d organizers ready in %.1f s" % (len(sim.users), time.time() - t0))
    try:
        env = dict(os.environ, MEETSYNC_BENCH_API_KEY=sim.api_key)
        cfg, vdir = meetsync_config(os.path.join(work, "meetsync"), sim, [])
        tool = Tool("meetsync", [a.bin, "-c", cfg, "sync", "--once"], vdir, env,
                    os.path.join(work, "meetsync.log"))
        for i in range(1 + a.runs):
            phase = "first" if i == 0 else "nochange"
            m = tool.run(sim)
            m.update(orgs=len(sim.users), per_org=per_org, run=max(i - 1, 0), tool="meetsync",
                     phase=phase)
            results["scale"].append(m)
            log_line("  scale %s: wall %.3f s cpu %.3f s rss %.1f MiB written %d req %d (304: %d)"
                     % (phase, m["wall"], m["cpu"], m["rss_kib"] / 1024, m["written"],
                        m["requests"], m["feed_304"]))
    finally:
        sim.stop()


# ---------------------------------------------------------------- report

def med(rows, key):
    vals = [r[key] for r in rows]
    return statistics.median(vals) if vals else None


def fmt_t(s):
    if s is None:
        return "—"
    return "%.0f ms" % (s * 1000) if s < 1 else "%.2f s" % s


def fmt_ratio(x, y):
    if x is None or y is None:
        return "—"
    if y <= 0:
        return "∞"
    r = x / y
    return "%.0f×" % r if r >= 100 else ("%.1f×" % r if r >= 10 else "%.2f×" % r)


def fmt_int(x):
    return "—" if x is None else ("%d" % x if float(x).is_integer() else "%.1f" % x)


def report(results, a):
    rows = results["rows"]
    out = []
    sizes = sorted({r["n"] for r in rows})
    phases = ["first", "nochange", "mutation"]
    pname = {"first": "first sync", "nochange": "no-change resync",
             "mutation": "%d/%d/%d mutation" % (a.mutate, a.mutate, a.mutate)}
    sel = lambda n, tool, phase: [r for r in rows if r["n"] == n and r["tool"] == tool and r["phase"] == phase]
    out.append("Medians of %d run(s) each; ratio = vdirsyncer / meetsync (higher is better for meetsync)." % a.runs)
    out.append("")
    out.append("| meetings | phase | wall meetsync | wall vdirsyncer | ratio | CPU meetsync | CPU vdirsyncer | ratio "
               "| peak RSS meetsync | peak RSS vdirsyncer | ratio | files written m / v | deleted m / v "
               "| HTTP req m / v | 304s m / v | wall ratio, each run |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in sizes:
        for ph in phases:
            m, v = sel(n, "meetsync", ph), sel(n, "vdirsyncer", ph)
            if not m and not v:
                continue
            g = lambda rs, k: med(rs, k) if rs else None
            mib = lambda x: "—" if x is None else "%.1f MiB" % (x / 1024)
            per_run = []
            for r in sorted({x["run"] for x in m}):
                mw = [x["wall"] for x in m if x["run"] == r]
                vw = [x["wall"] for x in v if x["run"] == r]
                if mw and vw:
                    per_run.append(vw[0] / mw[0])
            spread = ("%.1f–%.1f×" % (min(per_run), max(per_run))) if len(per_run) > 1 else "—"
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s / %s | %s |" % (
                "{:,}".format(n), pname[ph],
                fmt_t(g(m, "wall")), fmt_t(g(v, "wall")), fmt_ratio(g(v, "wall"), g(m, "wall")),
                fmt_t(g(m, "cpu")), fmt_t(g(v, "cpu")), fmt_ratio(g(v, "cpu"), g(m, "cpu")),
                mib(g(m, "rss_kib")), mib(g(v, "rss_kib")), fmt_ratio(g(v, "rss_kib"), g(m, "rss_kib")),
                fmt_int(g(m, "written")), fmt_int(g(v, "written")),
                fmt_int(g(m, "deleted")), fmt_int(g(v, "deleted")),
                fmt_int(g(m, "requests")), fmt_int(g(v, "requests")),
                fmt_int(g(m, "feed_304")), fmt_int(g(v, "feed_304")), spread))
    split = []
    for n in sizes:
        m, v = sel(n, "meetsync", "first"), sel(n, "vdirsyncer", "first")
        if m and v:
            split.append("%s: meetsync %s user + %s sys, vdirsyncer %s user + %s sys" % (
                "{:,}".format(n), fmt_t(med(m, "user")), fmt_t(med(m, "sys")),
                fmt_t(med(v, "user")), fmt_t(med(v, "sys"))))
    if split:
        out.append("")
        out.append("First sync CPU split (medians): " + "; ".join(split) + ".")
    disc = [r for r in rows if r["phase"] == "discover"]
    if disc:
        out.append("")
        out.append("`vdirsyncer discover` (not in the figures above, needed once before the first sync): median %s wall, %s CPU."
                   % (fmt_t(med(disc, "wall")), fmt_t(med(disc, "cpu"))))
    # growth of meetsync
    ms_sizes = sorted({r["n"] for r in rows if r["tool"] == "meetsync"})
    if len(ms_sizes) > 1:
        out.append("")
        out.append("meetsync alone, growth with the feed size (medians):")
        out.append("")
        out.append("| meetings | feed MB | first sync | per 1k meetings | CPU | peak RSS | no-change resync | mutation |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in ms_sizes:
            f = sel(n, "meetsync", "first")
            fb = results["feeds"].get(str(n), {}).get("bytes")
            out.append("| %s | %s | %s | %s | %s | %.1f MiB | %s | %s |" % (
                "{:,}".format(n), "%.1f" % (fb / 1e6) if fb else "—",
                fmt_t(med(f, "wall")), fmt_t(med(f, "wall") / n * 1000), fmt_t(med(f, "cpu")),
                med(f, "rss_kib") / 1024,
                fmt_t(med(sel(n, "meetsync", "nochange"), "wall")),
                fmt_t(med(sel(n, "meetsync", "mutation"), "wall"))))
    sc = results["scale"]
    if sc:
        out.append("")
        nc = [r for r in sc if r["phase"] == "nochange"]
        fs = [r for r in sc if r["phase"] == "first"]
        out.append("Scale: %d organizers (the admin has no meetings) × %d meetings, one `meetsync sync --once` round "
                   "(the `meetsync run` daemon is not measured):" % (sc[0]["orgs"], sc[0]["per_org"]))
        out.append("")
        out.append("| round | wall | CPU | peak RSS | files written | HTTP requests | 304s |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for label, rs in (("first sync (1 run)", fs), ("no-change (median of %d)" % len(nc), nc)):
            if rs:
                out.append("| %s | %s | %s | %.1f MiB | %s | %s | %s |" % (
                    label, fmt_t(med(rs, "wall")), fmt_t(med(rs, "cpu")), med(rs, "rss_kib") / 1024,
                    fmt_int(med(rs, "written")), fmt_int(med(rs, "requests")), fmt_int(med(rs, "feed_304"))))
    if results["feeds"]:
        out.append("")
        out.append("Feeds (as served, first run): " + "; ".join(
            "%s meetings: %.2f MB, %d VEVENTs, %d RRULE, %d EXDATE, %d RECURRENCE-ID, %d VTIMEZONE, "
            "longest line %d octets, %d folded lines, CRLF only: %s"
            % ("{:,}".format(int(n)), s["bytes"] / 1e6, s["vevents"], s["rrule"], s["exdate"],
               s["recurrence_id"], s["vtimezone"], s["max_line_octets"], s["folded_lines"], s["crlf_only"])
            for n, s in sorted(results["feeds"].items(), key=lambda x: int(x[0]))))
    out.extend(targets(results, a))
    if results["problems"]:
        out.append("")
        out.append("PROBLEMS:")
        out.extend("- " + p for p in results["problems"])
    else:
        checks = results["checks"]
        if checks:
            out.append("")
            out.append("Check: after every run both vdirs held the same number of files (%s) and the same "
                       "events, file by file (compared without UID lines: vdirsyncer's http storage "
                       "replaces UIDs by content hashes)."
                       % ", ".join(sorted({"{:,}".format(c["files"][0]) for c in checks})))
    return "\n".join(out)


def targets(results, a):
    rows = results["rows"]
    sel = lambda n, tool, phase: [r for r in rows if r["n"] == n and r["tool"] == tool and r["phase"] == phase]
    out = ["", "Targets (project, at 10k meetings):", ""]
    n = 10000
    def ratio(phase, key="wall"):
        m, v = sel(n, "meetsync", phase), sel(n, "vdirsyncer", phase)
        if not m or not v:
            return None, m
        return med(v, key) / max(med(m, key), 1e-9), m
    def line(ok, text):
        out.append("- [%s] %s" % ("met" if ok else ("NOT met" if ok is not None else "not measured"), text))
    r, m = ratio("first")
    line(None if r is None else r >= 5, "first sync ≥ 5× faster than vdirsyncer: %s" % ("—" if r is None else "%.1f×" % r))
    if m:
        rss = med(m, "rss_kib") / 1024
        line(rss <= 60, "first sync peak RSS ≤ 60 MiB: %.1f MiB" % rss)
    else:
        line(None, "first sync peak RSS ≤ 60 MiB")
    r, m = ratio("nochange")
    if m:
        w, c = med(m, "written"), med(m, "feed_304")
        line(None if r is None else (r >= 50 and w == 0 and c >= 1),
             "no-change resync ≥ 50× faster, 0 files written, conditional GET: %s, %s files, %s × 304"
             % ("—" if r is None else "%.0f×" % r, fmt_int(w), fmt_int(c)))
    else:
        line(None, "no-change resync ≥ 50× faster")
    r, m = ratio("mutation")
    line(None if r is None else r >= 10, "%d/%d/%d mutation ≥ 10× faster: %s"
         % (a.mutate, a.mutate, a.mutate, "—" if r is None else "%.1f×" % r))
    sc = [x for x in results["scale"] if x["phase"] == "nochange"]
    line(None if not sc or sc[0]["orgs"] < 1000 else med(sc, "wall") <= 3.0,
         "1,000 organizers no-change round ≤ 3 s: %s" % ("—" if not sc else "%s (%d organizers)" % (
             fmt_t(med(sc, "wall")), sc[0]["orgs"])))
    ms = sorted({x["n"] for x in rows if x["tool"] == "meetsync"})
    if len(ms) > 1:
        lo, hi = ms[0], ms[-1]
        per = lambda k: med(sel(k, "meetsync", "first"), "wall") / k
        growth = per(hi) / per(lo)
        line(growth <= 1.5, "near-linear first sync %s → %s meetings: cost per meeting × %.2f (≤ 1.5 counted as near-linear)"
             % ("{:,}".format(lo), "{:,}".format(hi), growth))
        nc = med(sel(hi, "meetsync", "nochange"), "wall") / med(sel(lo, "meetsync", "nochange"), "wall")
        line(nc <= 2.0, "near-flat no-change resync %s → %s meetings: × %.2f (≤ 2 counted as flat)"
             % ("{:,}".format(lo), "{:,}".format(hi), nc))
    return out


def clear_scratch(work):
    """Removes an earlier invocation's scratch folder, then waits out ext4's
    "recently deleted" window.

    On ext4 without a journal (this machine's root file system), the inode
    allocator skips inodes freed less than 60 s ago (`recently_deleted()` in
    fs/ext4/ialloc.c) and scans past every one of them for each new file:
    creating 10k files right after deleting 20k costs seconds of system time
    in whichever tool happens to go first. So nothing is deleted between the
    measurements of one invocation (each run gets its own folders), and
    leftovers of an earlier invocation are deleted up front, followed by
    sync and a 65 s pause.
    """
    if os.path.isdir(work) and os.listdir(work):
        log_line("== removing the previous scratch folder %s, then waiting 65 s "
                 "(ext4 without a journal: see clear_scratch)" % work)
        shutil.rmtree(work)
        os.sync()
        time.sleep(65)
    os.makedirs(work, exist_ok=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True, help="the meetsync binary")
    p.add_argument("--vdirsyncer", required=True, help="the vdirsyncer 0.21.0 executable")
    p.add_argument("--work", required=True, help="scratch folder (wiped per size/run)")
    p.add_argument("--sizes", default="1000,10000", help="meetings, both tools")
    p.add_argument("--solo-sizes", default="50000", help="meetings, meetsync alone ('' for none)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--mutate", type=int, default=100, help="K changed, K deleted, K added")
    p.add_argument("--scale", default="1000x50", help="ORGANIZERSxMEETINGS, '' to skip")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-pad", dest="pad", action="store_false",
                   help="serve the simulator's feed as generated (~9.5 MB per 10k meetings)")
    p.add_argument("--json", help="write all raw measurements here")
    p.add_argument("--max-rps", help="set meetsync's [pair.platform] max_requests_per_second "
                   "(default: leave it out, i.e. meetsync's default)")
    p.add_argument("--report", metavar="JSON", help="only print the report of an earlier run's JSON")
    if "--report" in sys.argv:
        i = sys.argv.index("--report")
        with open(sys.argv[i + 1]) as f:
            results = json.load(f)
        a = argparse.Namespace(**results["params"])
        print(report(results, a))
        return 0
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    global MAX_RPS
    MAX_RPS = a.max_rps
    clear_scratch(a.work)
    results = {"rows": [], "scale": [], "feeds": {}, "checks": [], "problems": [],
               "params": {k: v for k, v in vars(a).items()}}
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]
    plan = [(n, ("meetsync", "vdirsyncer")) for n in ints(a.sizes)] + \
           [(n, ("meetsync",)) for n in ints(a.solo_sizes)]
    for n, tools in plan:
        for run in range(a.runs):
            log_line("== %d meetings, run %d/%d (%s)" % (n, run + 1, a.runs, " + ".join(tools)))
            compare_run(a, n, run, tools, results)
    if a.scale:
        o, m = (int(x) for x in a.scale.lower().split("x"))
        log_line("== scale: %d organizers × %d meetings" % (o, m))
        scale_run(a, o, m, results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print(report(results, a))
    return 1 if results["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
