"""Compare a feed with the vdir meetsync wrote from it, with python icalendar.

usage: check_vdir.py FEED.ics COLLECTION_DIR START_ISO END_ISO

Checks: every .ics file parses; every UID of the feed is in exactly one file;
every occurrence (recurring-ical-events, overrides and EXDATEs applied) in the
window is equal between the feed and the union of the files. Prints a JSON
summary; exits 1 on any difference.
"""
import json
import os
import sys
from datetime import datetime

import icalendar
import recurring_ical_events


def occurrences(cal, start, end):
    out = set()
    for ev in recurring_ical_events.of(cal).between(start, end):
        s = ev.get("DTSTART").dt
        e = ev.get("DTEND").dt if ev.get("DTEND") else None
        out.add((str(ev.get("UID")), s.isoformat(), e.isoformat() if e else None, str(ev.get("SUMMARY"))))
    return out


def main():
    feed_path, coll, start, end = sys.argv[1:5]
    start = datetime.fromisoformat(start)
    end = datetime.fromisoformat(end)
    with open(feed_path, "rb") as f:
        feed = icalendar.Calendar.from_ical(f.read())
    feed_uids = {str(c.get("UID")) for c in feed.walk("VEVENT")}
    problems = []
    uid_files = {}
    merged = icalendar.Calendar()
    files = sorted(n for n in os.listdir(coll) if n.endswith(".ics"))
    for name in files:
        with open(os.path.join(coll, name), "rb") as f:
            try:
                cal = icalendar.Calendar.from_ical(f.read())
            except Exception as e:  # noqa: BLE001
                problems.append(f"{name}: does not parse: {e}")
                continue
        uids = {str(c.get("UID")) for c in cal.walk("VEVENT")}
        if len(uids) != 1:
            problems.append(f"{name}: {len(uids)} UIDs in one file")
        for u in uids:
            uid_files.setdefault(u, []).append(name)
        for comp in cal.subcomponents:
            merged.add_component(comp)
    for u, names in uid_files.items():
        if len(names) > 1:
            problems.append(f"UID {u} in {len(names)} files")
    missing = feed_uids - set(uid_files)
    extra = set(uid_files) - feed_uids
    if missing:
        problems.append(f"{len(missing)} feed UIDs missing, e.g. {sorted(missing)[:3]}")
    if extra:
        problems.append(f"{len(extra)} UIDs not in the feed, e.g. {sorted(extra)[:3]}")
    a = occurrences(feed, start, end)
    b = occurrences(merged, start, end)
    if a != b:
        problems.append(f"occurrences differ: {len(a - b)} only in feed, {len(b - a)} only in vdir, e.g. {sorted(a ^ b)[:2]}")
    print(json.dumps({"files": len(files), "uids": len(feed_uids), "occurrences": len(a), "problems": problems[:20]}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
