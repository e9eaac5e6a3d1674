#!/usr/bin/env python3
"""Independent reference implementation of ../shared/spec/metrics.md (written from the spec alone, without reading netwait) (stdlib only).

Usage:
  reference.py FILE counts
  reference.py FILE table1 --from 2019-01-01 --to 2020-01-01 [--line L] [--threshold S]
  reference.py FILE sla --year 2019 [--line L] [--threshold S] [--target X] [--grave X] [--policy P]
  reference.py FILE calls            # dump call records (debug)
Options: --now-ms N  (wall clock in epoch ms; default: real time)
"""
import json
import re
import sys
import time
from datetime import datetime, timezone, date, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

ROME = ZoneInfo("Europe/Rome")
MAX_LINE = 65536
TS_MIN = 0
TS_MAX_EXCL = 4133980800000  # 2101-01-01T00:00Z in ms
SIX_H = 6 * 3600 * 1000

CALL_TYPES = {"offered", "announcement_end", "queued", "answered", "ended",
              "abandoned", "overflow", "booking"}
AGENT_TYPES = {"agent_login", "agent_logout", "agent_pause", "agent_resume"}
ALL_TYPES = CALL_TYPES | AGENT_TYPES
STR_FIELDS = ("call_id", "event_id", "line", "agent", "reason", "caller")
BOOKING_VALUES = {"book", "cancel", "move"}

RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))", re.ASCII)


class Reject(Exception):
    pass


class FloatTok:
    """A JSON number with a fraction or exponent (kept as text)."""
    def __init__(self, s):
        self.s = s


class HugeInt:
    def __init__(self, s):
        self.s = s


def _bad_const(s):
    raise Reject("json: constant " + s)


def _pairs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise Reject("duplicate key " + repr(k))
        d[k] = v
    return d


def _parse_int(s):
    if len(s.lstrip("-")) > 40:
        return HugeInt(s)
    return int(s)


def _has_lone_surrogate(obj):
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, str):
            for ch in o:
                if 0xD800 <= ord(ch) <= 0xDFFF:
                    return True
        elif isinstance(o, dict):
            for k, v in o.items():
                stack.append(k)
                stack.append(v)
        elif isinstance(o, list):
            stack.extend(o)
    return False


def days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


MDAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def parse_ts(v):
    if isinstance(v, bool):
        raise Reject("ts: boolean")
    if isinstance(v, int):
        ms = v
    elif isinstance(v, str):
        m = RFC3339.fullmatch(v)
        if not m:
            raise Reject("ts: not RFC 3339: " + repr(v))
        y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
        frac = m.group(7)
        if not (1 <= mo <= 12):
            raise Reject("ts: month")
        dim = 29 if (mo == 2 and is_leap(y)) else MDAYS[mo - 1]
        if not (1 <= d <= dim):
            raise Reject("ts: day")
        if h > 23 or mi > 59 or s > 59:
            raise Reject("ts: time")
        fms = 0
        if frac is not None:
            fms = int((frac + "00")[:3])
        off = 0
        if m.group(8) is None:
            oh, om = int(m.group(10)), int(m.group(11))
            if oh > 23 or om > 59:
                raise Reject("ts: offset")
            off = (oh * 60 + om) * 60000
            if m.group(9) == "-":
                off = -off
        ms = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000 + fms - off
    else:
        raise Reject("ts: wrong JSON type")
    if not (TS_MIN <= ms < TS_MAX_EXCL):
        raise Reject("ts: out of range")
    return ms


def validate_line(raw):
    """raw: bytes without terminator. Returns event dict or raises Reject."""
    if len(raw) > MAX_LINE:
        raise Reject("oversized")
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise Reject("utf8")
    try:
        obj = json.loads(text, object_pairs_hook=_pairs, parse_float=FloatTok,
                         parse_int=_parse_int, parse_constant=_bad_const)
    except Reject:
        raise
    except (ValueError, RecursionError) as e:
        raise Reject("json: %s" % e)
    if _has_lone_surrogate(obj):
        raise Reject("lone surrogate")
    if not isinstance(obj, dict):
        raise Reject("not an object")
    ev = {}
    t = obj.get("type")
    if t is None:
        raise Reject("missing type")
    if not isinstance(t, str) or t not in ALL_TYPES:
        raise Reject("bad type")
    ev["type"] = t
    if obj.get("ts") is None:
        raise Reject("missing ts")
    ev["ts"] = parse_ts(obj["ts"])
    for f in STR_FIELDS:
        v = obj.get(f)
        if v is None:
            ev[f] = None
            continue
        if not isinstance(v, str):
            raise Reject(f + ": not a string")
        if not (1 <= len(v) <= 128):
            raise Reject(f + ": length")
        ev[f] = v
    b = obj.get("booking")
    if b is None:
        ev["booking"] = None
    else:
        if not isinstance(b, str) or b not in BOOKING_VALUES:
            raise Reject("booking: bad value")
        ev["booking"] = b
    if t in CALL_TYPES and ev["call_id"] is None:
        raise Reject("missing call_id")
    if (t == "answered" or t in AGENT_TYPES) and ev["agent"] is None:
        raise Reject("missing agent")
    if t == "booking" and ev["booking"] is None:
        raise Reject("missing booking")
    return ev


def split_lines(data):
    """NDJSON lines; '\n' or '\r\n' terminators; last line may lack one."""
    parts = data.split(b"\n")
    last_unterminated = parts[-1] != b""
    if not last_unterminated:
        parts = parts[:-1]
    out = []
    for i, p in enumerate(parts):
        terminated = i < len(parts) - 1 or not last_unterminated
        if terminated and p.endswith(b"\r"):
            p = p[:-1]
        out.append(p)
    return out


def dedupe_key(ev):
    if ev["event_id"] is not None:
        return ("E", ev["event_id"])
    return ("K", ev["call_id"], ev["type"], ev["ts"], ev["agent"], ev["booking"])


class Store:
    def __init__(self, now_ms=None):
        self.keys = set()
        self.events = []
        self.accepted = 0
        self.duplicate = 0
        self.rejected = 0
        self.reasons = {}
        self.reject_lines = {}  # 1-based line number -> reason
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)

    def ingest_bytes(self, data):
        for lineno, raw in enumerate(split_lines(data), 1):
            try:
                ev = validate_line(raw)
            except Reject as e:
                self.reject_lines[lineno] = str(e)
                self.rejected += 1
                r = str(e).split(":")[0]
                self.reasons[r] = self.reasons.get(r, 0) + 1
                continue
            k = dedupe_key(ev)
            if k in self.keys:
                self.duplicate += 1
                continue
            self.keys.add(k)
            self.accepted += 1
            self.events.append(ev)

    def build_calls(self):
        clock = self.now_ms
        for e in self.events:
            clock = max(clock, e["ts"])
        by_call = {}
        for e in self.events:
            if e["type"] in AGENT_TYPES:
                continue
            by_call.setdefault(e["call_id"], []).append(e)
        calls = []
        for cid, evs in by_call.items():
            calls.append(build_call(cid, evs, clock))
        return calls


def build_call(cid, evs, clock):
    def mints(t):
        xs = [e["ts"] for e in evs if e["type"] == t]
        return min(xs) if xs else None

    offered = [e for e in evs if e["type"] == "offered"]
    if offered:
        anchor = min(e["ts"] for e in offered)
        line = min((e["line"] if e["line"] is not None else "cup")
                   for e in offered if e["ts"] == anchor)
    else:
        anchor = min(e["ts"] for e in evs)
        line = "cup"
    ans = mints("answered")
    ab = mints("abandoned")
    ov = mints("overflow")
    if ans is not None:
        outcome = "answered"
    elif ab is not None or ov is not None:
        if ov is None or (ab is not None and ab <= ov):
            outcome = "abandoned"
        else:
            outcome = "overflow"
    else:
        outcome = "unresolved" if clock - anchor >= SIX_H else "open"
    ae = mints("announcement_end")
    q = mints("queued")
    ws = ae if ae is not None else (q if q is not None else anchor)
    wait_ms = None
    if outcome == "answered":
        wait_ms = max(0, ans - ws)
    elif outcome == "abandoned":
        wait_ms = max(0, ab - ws)
    talk_ms = None
    en = mints("ended")
    if outcome == "answered" and en is not None:
        talk_ms = max(0, en - ans)
    bookings = sum(1 for e in evs if e["type"] == "booking")
    sec = anchor // 1000
    loc = datetime.fromtimestamp(sec, ROME)
    tod_ms = (loc.hour * 3600 + loc.minute * 60 + loc.second) * 1000 + anchor % 1000
    ldate = loc.date()
    return {"call_id": cid, "anchor": anchor, "line": line, "outcome": outcome,
            "wait_ms": wait_ms, "talk_ms": talk_ms, "bookings": bookings,
            "local_date": ldate, "tod_ms": tod_ms,
            "in_hours": in_hours(ldate, tod_ms)}


def easter(y):
    a = y % 19
    b, c = divmod(y, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l) // 451
    month = (h + l - 7 * m + 114) // 31
    day = ((h + l - 7 * m + 114) % 31) + 1
    return date(y, month, day)


def is_holiday(d):
    fixed = {(1, 1), (1, 6), (4, 25), (5, 1), (6, 2), (8, 15), (11, 1), (12, 8), (12, 25), (12, 26)}
    if (d.month, d.day) in fixed:
        return True
    if d.year >= 2026 and (d.month, d.day) == (10, 4):
        return True
    if d == easter(d.year) + timedelta(days=1):
        return True
    return False


def in_hours(d, tod_ms):
    wd = d.weekday()  # Mon=0
    if wd == 6 or is_holiday(d):
        return False
    open_ms = 8 * 3600 * 1000
    close_ms = (12 if wd == 5 else 18) * 3600 * 1000
    return open_ms <= tod_ms < close_ms


def table1(calls, dfrom, dto, line=None, threshold_s=140):
    T = Fraction(str(threshold_s)) * 1000
    r = dict(answered=0, overflow=0, abandoned=0, answered_without_wait=0,
             answered_wait_within_threshold=0, answered_wait_over_threshold=0,
             bookings=0, out_of_hours=0, unresolved=0)
    waits, talks = [], []
    for c in calls:
        if c["outcome"] == "open":
            continue
        if not (dfrom <= c["local_date"] < dto):
            continue
        if line is not None and c["line"] != line:
            continue
        if not c["in_hours"]:
            r["out_of_hours"] += 1
            continue
        if c["outcome"] == "unresolved":
            r["unresolved"] += 1
            continue
        r[c["outcome"]] += 1
        r["bookings"] += c["bookings"]
        if c["outcome"] == "answered":
            w = c["wait_ms"]
            waits.append(w)
            # literal §4 definitions (they overlap only when T < 1 s)
            if w < 1000:
                r["answered_without_wait"] += 1
            if 1000 <= w < T:
                r["answered_wait_within_threshold"] += 1
            if w >= T:
                r["answered_wait_over_threshold"] += 1
            if c["talk_ms"] is not None:
                talks.append(c["talk_ms"])
    r["calls_received"] = r["answered"] + r["overflow"] + r["abandoned"]
    r["max_wait_s"] = max(waits) / 1000 if waits else None
    r["avg_wait_s"] = float(Fraction(sum(waits), len(waits) * 1000)) if waits else None
    r["avg_talk_s"] = float(Fraction(sum(talks), len(talks) * 1000)) if talks else None
    r["from"] = dfrom.isoformat()
    r["to"] = dto.isoformat()
    r["line"] = line
    r["threshold_s"] = threshold_s
    return r


def sla(calls, year, line=None, threshold_s=140, target=0.60, grave=0.40, policy="answered"):
    T = Fraction(str(threshold_s)) * 1000
    target = Fraction(str(target))
    grave = Fraction(str(grave))
    months = []
    below = 0
    any_grave = False
    for mo in range(1, 13):
        a = aw = ab = ov = 0
        for c in calls:
            if c["outcome"] not in ("answered", "abandoned", "overflow"):
                continue
            if not c["in_hours"]:
                continue
            if c["local_date"].year != year or c["local_date"].month != mo:
                continue
            if line is not None and c["line"] != line:
                continue
            if c["outcome"] == "answered":
                a += 1
                if c["wait_ms"] < T:
                    aw += 1
            elif c["outcome"] == "abandoned":
                ab += 1
            else:
                ov += 1
        dens = {"answered": a, "answered_and_abandoned": a + ab, "offered": a + ab + ov}
        pol = {k: (Fraction(aw, v) if v else None) for k, v in dens.items()}
        s = pol[policy]
        if s is None:
            status = "no_traffic"
        elif s >= target:
            status = "ok"
        elif s >= grave:
            status = "below_target"
        else:
            status = "grave"
        if status in ("below_target", "grave"):
            below += 1
        if status == "grave":
            any_grave = True
        months.append({"month": "%04d-%02d" % (year, mo),
                       "sla": float(s) if s is not None else None,
                       "policies": {k: (float(v) if v is not None else None) for k, v in pol.items()},
                       "status": status, "answered": a, "answered_within_threshold": aw,
                       "abandoned": ab, "overflow": ov})
    return {"year": year, "months": months, "months_below_target": below,
            "termination_risk": below >= 3 or any_grave}


def load(path, now_ms=None):
    """Parses in a thread with a large stack: JSON nesting has no depth limit in the spec
    (a 65,536-byte line can nest ~32,768 levels)."""
    import threading
    st = Store(now_ms)
    with open(path, "rb") as f:
        data = f.read()
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200000)
    threading.stack_size(1024 * 1024 * 1024)
    err = []

    def work():
        try:
            st.ingest_bytes(data)
        except BaseException as e:  # pragma: no cover
            err.append(e)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    threading.stack_size(0)
    sys.setrecursionlimit(old_limit)
    if err:
        raise err[0]
    return st


def main(argv):
    path, cmd = argv[0], argv[1]
    opts = {}
    i = 2
    while i < len(argv):
        opts[argv[i].lstrip("-")] = argv[i + 1]
        i += 2
    now = int(opts["now-ms"]) if "now-ms" in opts else None
    st = load(path, now)
    if cmd == "counts":
        out = {"accepted": st.accepted, "duplicate": st.duplicate, "rejected": st.rejected,
               "reasons": st.reasons}
    elif cmd == "calls":
        out = [dict(c, local_date=c["local_date"].isoformat()) for c in st.build_calls()]
    elif cmd == "table1":
        thr = opts.get("threshold", "140")
        thr = int(thr) if thr.isdigit() else float(thr)
        out = table1(st.build_calls(), date.fromisoformat(opts["from"]),
                     date.fromisoformat(opts["to"]), opts.get("line"), thr)
    elif cmd == "sla":
        thr = opts.get("threshold", "140")
        thr = int(thr) if thr.isdigit() else float(thr)
        out = sla(st.build_calls(), int(opts["year"]), opts.get("line"), thr,
                  float(opts.get("target", "0.60")), float(opts.get("grave", "0.40")),
                  opts.get("policy", "answered"))
    else:
        raise SystemExit("unknown command")
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
