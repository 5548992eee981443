#!/usr/bin/env python3
"""Profiles meetsync's first sync (and the 100/100/100 mutation) of an
N-meeting feed from the simulator (same feed as bench.py). Run by
`bench/profile`; standard library only. Writes into --out:

  perf-*.txt       where the on-CPU time goes, user and kernel together:
                   `perf record -e cpu-clock --call-graph dwarf`, every sample
                   charged to (system call or "user", innermost meetsync
                   function); only when `perf` can sample at all.
                   (`perf stat -e instructions` does not work on this VM: no
                   hardware counters; cpu-clock is a software event.)
  callgrind-*.txt  user-space instructions by function, exclusive and
                   inclusive (valgrind --tool=callgrind). Under valgrind
                   sha2 takes its portable path: SHA-256 weighs far more
                   there than natively (SHA-NI).
  heap-*.txt       peak heap and who holds it (heaptrack, else massif).
  strace-*.txt     system calls by count and CPU time (strace -c -f), and
                   strace-wall-*: by wall time inside the call (-w: waits
                   for syncfs and the network included; all threads summed).
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def sh(cmd, env, out=None, check=True):
    bench.log_line("$ " + " ".join(cmd))
    with open(out, "w") if out else open(os.devnull, "w") as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT,
                           preexec_fn=bench._die_with_parent)
    if check and r.returncode != 0:
        raise RuntimeError("%s exited %d%s" % (cmd[0], r.returncode, " (see %s)" % out if out else ""))
    return r.returncode


def perf_works():
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def hw_counters():
    r = subprocess.run(["perf", "stat", "-e", "instructions", "true"], capture_output=True, text=True)
    return r.returncode == 0 and "not supported" not in r.stderr


def demangle_tail(sym):
    sym = sym.split("+0x")[0]
    return re.sub(r"::h[0-9a-f]{16}$", "", sym)


def perf_summary(script_txt, out_txt, title):
    """Charges each sample to (syscall or user, innermost useful meetsync frame)."""
    with open(script_txt, errors="replace") as f:
        samples = f.read().split("\n\n")
    by_pair, by_fn, by_sys = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    for s in samples:
        lines = [x.strip() for x in s.strip().split("\n")[1:] if x.strip()]
        if not lines:
            continue
        total += 1
        frames = [re.sub(r"^[0-9a-f]+ ", "", x).rsplit(" (", 1) for x in lines]
        syms = [demangle_tail(fr[0]) for fr in frames]
        in_kernel = len(frames[0]) > 1 and "kernel" in frames[0][1]
        sc = next((x for x in syms if x.startswith("__x64_sys_")), None)
        sc = sc[len("__x64_sys_"):] if sc else ("kernel (no system call)" if in_kernel else "user")
        fn = next((x for x in syms if x.startswith("meetsync::") and "{{closure}}" not in x
                   and not x.startswith("meetsync::main")), "(outside meetsync code)")
        by_pair[(sc, fn)] += 1
        by_fn[fn] += 1
        by_sys[sc] += 1
    with open(out_txt, "w") as f:
        f.write("%s: %d cpu-clock samples (on-CPU time only)\n\n" % (title, total))
        f.write("by innermost meetsync function (user + kernel):\n")
        for fn, c in by_fn.most_common(15):
            f.write("  %5.1f%%  %s\n" % (100 * c / total, fn))
        f.write("\nby system call ('user' = not in a system call):\n")
        for sc, c in by_sys.most_common(12):
            f.write("  %5.1f%%  %s\n" % (100 * c / total, sc))
        f.write("\nby (system call, function):\n")
        for (sc, fn), c in by_pair.most_common(25):
            f.write("  %5.1f%%  %-16s %s\n" % (100 * c / total, sc, fn))
    return out_txt


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--meetings", type=int, default=10000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-pad", dest="pad", action="store_false")
    p.add_argument("--scratch", help="where the vdirs go (default OUT/scratch)")
    a = p.parse_args()
    a.work = a.scratch or os.path.join(a.out, "scratch")
    bench.clear_scratch(a.work)
    os.makedirs(a.out, exist_ok=True)
    have_perf = perf_works()
    reports = []
    sim = bench.Sim(a.bin, 1, a.meetings, a.seed, os.path.join(a.out, "sim.log"))
    try:
        org = next(u for u in sim.users if u["email"] != "admin@meeting.example.test")
        if a.pad:
            bench.pad_feed(sim, org["ics_path"], a.seed)
        stats = bench.feed_stats(sim.feed(org["ics_path"]))
        env = dict(os.environ, MEETSYNC_BENCH_API_KEY=sim.api_key)
        n = [0]

        def fresh():
            n[0] += 1
            cfg, _ = bench.meetsync_config(os.path.join(a.work, "p%d" % n[0]), sim, [org["email"]])
            os.sync()
            return [a.bin, "-c", cfg, "sync", "--once"]

        tag = "first-%d" % a.meetings
        if have_perf:
            data = os.path.join(a.out, "perf-%s.data" % tag)
            sh(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "--call-graph", "dwarf,32768",
                "-o", data, "--"] + fresh(), env)
            script = os.path.join(a.out, "perf-%s.script" % tag)
            sh(["perf", "script", "-i", data], env, out=script)
            reports.append(perf_summary(script, os.path.join(a.out, "perf-%s.txt" % tag),
                                        "first sync of %d meetings (%.1f MB feed)" % (a.meetings, stats["bytes"] / 1e6)))
            os.unlink(script)
            os.unlink(data)
            # the mutation, on the vdir just written
            cmd = fresh()
            sh(cmd, env)
            bench.mutate(sim, org["id"], org["ics_path"], 100, a.seed * 100, a.pad)
            sim.feed(org["ics_path"])
            os.sync()
            data = os.path.join(a.out, "perf-mutation.data")
            sh(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "--call-graph", "dwarf,32768",
                "-o", data, "--"] + cmd, env)
            script = os.path.join(a.out, "perf-mutation.script")
            sh(["perf", "script", "-i", data], env, out=script)
            reports.append(perf_summary(script, os.path.join(a.out, "perf-mutation-%d.txt" % a.meetings),
                                        "100/100/100 mutation of %d meetings" % a.meetings))
            os.unlink(script)
            os.unlink(data)
        if shutil.which("valgrind"):
            cg = os.path.join(a.out, "callgrind-%s.out" % tag)
            sh(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + cg] + fresh(), env,
               out=os.path.join(a.out, "valgrind.log"))
            for mode in ("no", "yes"):
                txt = os.path.join(a.out, "callgrind-%s-%s.txt" % (tag, "self" if mode == "no" else "inclusive"))
                sh(["callgrind_annotate", "--inclusive=" + mode, cg], env, out=txt)
                reports.append(txt)
        if shutil.which("heaptrack"):
            ht = os.path.join(a.out, "heaptrack-%s" % tag)
            sh(["heaptrack", "-o", ht] + fresh(), env, out=os.path.join(a.out, "heaptrack.log"))
            htf = next(f for f in os.listdir(a.out) if f.startswith("heaptrack-%s" % tag) and not f.endswith(".txt"))
            txt = os.path.join(a.out, "heap-%s.txt" % tag)
            sh(["heaptrack_print", os.path.join(a.out, htf), "--print-peaks", "1", "--print-allocators", "0",
                "--print-leaks", "0", "--print-temporary", "0", "--peak-limit", "8"], env, out=txt)
            reports.append(txt)
        elif shutil.which("valgrind"):
            ms = os.path.join(a.out, "massif-%s.out" % tag)
            sh(["valgrind", "--tool=massif", "--massif-out-file=" + ms] + fresh(), env,
               out=os.path.join(a.out, "valgrind-massif.log"))
            txt = os.path.join(a.out, "heap-%s.txt" % tag)
            sh(["ms_print", ms], env, out=txt)
            reports.append(txt)
        if shutil.which("strace"):
            txt = os.path.join(a.out, "strace-%s.txt" % tag)
            sh(["strace", "-f", "-c", "-o", txt] + fresh(), env)
            reports.append(txt)
            # -w: wall-clock time inside each call, waits included (syncfs, network)
            txt = os.path.join(a.out, "strace-wall-%s.txt" % tag)
            sh(["strace", "-f", "-c", "-w", "-o", txt] + fresh(), env)
            reports.append(txt)
    finally:
        sim.stop()
    bench.log_line("perf sampling: %s; hardware counters: %s" % (
        "yes" if have_perf else "no", "yes" if have_perf and hw_counters() else "no"))
    print("\n".join(reports))


if __name__ == "__main__":
    main()
