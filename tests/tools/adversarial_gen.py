#!/usr/bin/env python3
"""Deterministic adversarial NDJSON generator for netwait (spec ../shared/spec/metrics.md).

Usage: adversarial.py OUT.ndjson [--seed N] [--calls N]
Writes a shuffled stream: valid events in every ts form, duplicates, conflicting
re-sends, agent events, malformed lines of every kind, \\r\\n endings, unknown fields.
"""
import json
import random
import sys
from datetime import datetime, date, timedelta, timezone
from zoneinfo import ZoneInfo

ROME = ZoneInfo("Europe/Rome")
UTC = timezone.utc


def local_ms(d, h, mi, s, ms, fold=0):
    dt = datetime(d.year, d.month, d.day, h, mi, s, tzinfo=ROME, fold=fold)
    return int(dt.timestamp()) * 1000 + ms


def rome_offset_min(ms):
    dt = datetime.fromtimestamp(ms // 1000, ROME)
    return int(dt.utcoffset().total_seconds() // 60)


class Gen:
    def __init__(self, seed, ncalls):
        self.r = random.Random(seed)
        self.ncalls = ncalls
        self.lines = []  # list of bytes (without terminator)
        self.eid = 0
        self.cid = 0

    # ---------- ts rendering ----------
    def render_ts(self, ms, form=None):
        r = self.r
        if form is None:
            form = r.choices(["int", "local", "Z", "z", "other"], [3, 4, 2, 1, 1])[0]
        if form == "int":
            return ms  # integer epoch ms
        if form == "local":
            off = rome_offset_min(ms)
        elif form in ("Z", "z"):
            off = 0
        else:
            off = r.choice([-720, -300, -60, 0, 60, 120, 330, 345, 600, 840, 23 * 60 + 59, -(23 * 60 + 59)])
        sec, msr = divmod(ms, 1000)
        lt = datetime(1970, 1, 1) + timedelta(seconds=sec + off * 60)
        sep = r.choices(["T", "t", " "], [6, 1, 1])[0]
        # fraction digits
        if msr == 0:
            n = r.choice([0, 0, 1, 2, 3, 4, 6, 9])
        elif msr % 100 == 0:
            n = r.choice([1, 2, 3, 5, 9])
        elif msr % 10 == 0:
            n = r.choice([2, 3, 4, 7, 9])
        else:
            n = r.choice([3, 3, 4, 5, 6, 7, 8, 9])
        m3 = "%03d" % msr
        if n == 0:
            frac = ""
        elif n <= 3:
            frac = "." + m3[:n]
        else:
            frac = "." + m3 + "".join(r.choice("0123456789") for _ in range(n - 3))
        if form == "Z":
            z = "Z"
        elif form == "z":
            z = "z"
        else:
            if off == 0 and r.random() < 0.3:
                z = r.choice(["+00:00", "-00:00"])
            else:
                sign = "+" if off >= 0 else "-"
                z = "%s%02d:%02d" % (sign, abs(off) // 60, abs(off) % 60)
        return "%04d-%02d-%02d%s%02d:%02d:%02d%s%s" % (
            lt.year, lt.month, lt.day, sep, lt.hour, lt.minute, lt.second, frac, z)

    # ---------- event rendering ----------
    def new_eid(self):
        self.eid += 1
        return "ev-%06d-%s" % (self.eid, self.r.choice(["a", "b", "ü", "€", "𝄞"]))

    def render(self, ev, ts_form=None, crlf=None, extra=None):
        """ev: dict of field -> value (python), with 'ts' in ms. Returns bytes line."""
        r = self.r
        items = []
        for k, v in ev.items():
            if k == "ts":
                items.append((k, json.dumps(self.render_ts(v, ts_form), ensure_ascii=r.random() < 0.5)))
            elif v is _ABSENT:
                continue
            else:
                items.append((k, json.dumps(v, ensure_ascii=r.random() < 0.5)))
        # unknown extra fields / null optionals
        if extra is None:
            extra = r.random() < 0.25
        if extra:
            choices = [
                ('"x_note"', '"hello"'), ('"x_num"', '1.5e300'), ('"x_big"', '123456789012345678901234567890'),
                ('"x_obj"', '{"a":[1,2,{"b":null}],"c":true}'), ('"x_null"', 'null'),
                ('"x_arr"', '[]'), ('"Type"', '"garbage"'), ('"TS"', '5'), ('"x_pair"', '"\\ud83d\\ude00"'),
                ('"x_neg"', '-0.0'), ('"x_esc"', '"a\\u0000b\\n"'),
            ]
            for _ in range(r.randint(1, 3)):
                k, v = r.choice(choices)
                if k.strip('"') not in [i[0] for i in items]:
                    items.append((k.strip('"'), v))
        for f in ("reason", "caller", "event_id", "line", "agent", "booking"):
            if f not in ev and r.random() < 0.05:
                items.append((f, "null"))
        r.shuffle(items)
        sp = r.choice(["", " "])
        body = "{" + ("," + sp).join(json.dumps(k) + ":" + sp + v for k, v in items) + "}"
        if r.random() < 0.03:
            body = " " + body + " \t"
        return body.encode("utf-8")

    def emit(self, raw):
        self.lines.append(raw)

    # ---------- calls ----------
    SPECIAL_DAYS = [
        date(2019, 1, 1), date(2019, 1, 2), date(2019, 1, 5), date(2019, 1, 7),
        date(2019, 3, 30), date(2019, 3, 31), date(2019, 4, 1), date(2019, 4, 20), date(2019, 4, 21),
        date(2019, 4, 22), date(2019, 4, 23), date(2019, 4, 25), date(2019, 5, 1), date(2019, 6, 1),
        date(2019, 8, 14), date(2019, 8, 15), date(2019, 10, 4), date(2019, 10, 26), date(2019, 10, 27),
        date(2019, 10, 28), date(2019, 11, 1), date(2019, 12, 7), date(2019, 12, 24), date(2019, 12, 26),
        date(2019, 12, 31), date(2019, 2, 28), date(2019, 3, 1), date(2019, 1, 25), date(2019, 2, 14),
        date(2026, 1, 6), date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30), date(2026, 4, 4),
        date(2026, 4, 5), date(2026, 4, 6), date(2026, 4, 25), date(2026, 5, 1), date(2026, 6, 2),
        date(2026, 8, 14), date(2026, 8, 15), date(2026, 10, 3), date(2026, 10, 4), date(2026, 10, 5),
        date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26), date(2026, 11, 2), date(2026, 9, 8),
    ]
    SPECIAL_TIMES = [
        (7, 59, 59, 999), (8, 0, 0, 0), (8, 0, 0, 1), (11, 59, 59, 999), (12, 0, 0, 0), (12, 0, 0, 1),
        (17, 59, 59, 999), (18, 0, 0, 0), (0, 0, 0, 0), (23, 59, 59, 999), (2, 30, 0, 0), (1, 30, 0, 0),
        (3, 0, 0, 0), (0, 30, 0, 0), (22, 59, 59, 999), (23, 0, 0, 0),
    ]
    WAITS = [0, 1, 999, 1000, 1001, 59999, 60000, 60001, 139999, 140000, 140001, 500, 20000, 200000]

    def pick_day(self):
        r = self.r
        x = r.random()
        if x < 0.35:
            return r.choice(self.SPECIAL_DAYS)
        if x < 0.7:
            return date(2019, 1, 1) + timedelta(days=r.randrange(365))
        return date(2026, 1, 1) + timedelta(days=r.randrange(320))  # stays before 2026-11-17

    def pick_anchor(self):
        r = self.r
        d = self.pick_day()
        if r.random() < 0.3:
            h, mi, s, ms = r.choice(self.SPECIAL_TIMES)
        else:
            h = r.choices(range(24), [1] * 7 + [10] * 11 + [2] * 6)[0]
            mi, s, ms = r.randrange(60), r.randrange(60), r.randrange(1000)
            if r.random() < 0.3:
                ms = r.choice([0, 100, 500, 10])
        fold = r.randrange(2)
        return local_ms(d, h, mi, s, ms, fold)

    def month_quality(self, ms):
        # make monthly SLA vary: fraction of answered calls waiting >= 140 s
        d = datetime.fromtimestamp(ms // 1000, ROME)
        table = {1: 0.1, 2: 0.45, 3: 0.5, 4: 0.2, 5: 0.7, 6: 0.05, 7: 0.3, 8: 0.65, 9: 0.39, 10: 0.41,
                 11: 0.0, 12: 0.6}
        q = table[d.month]
        if d.year == 2026:
            q = 1 - q
        return q

    def call(self):
        r = self.r
        self.cid += 1
        cid = r.choice(["c%05d" % self.cid, "call-%d" % self.cid, "Ç%d" % self.cid,
                        "𝄞%d" % self.cid, ("x" * 120) + "%05d" % self.cid])
        A = self.pick_anchor()
        evs = []  # (dict, use_eid)

        def add(t, ts, **kw):
            ev = {"type": t, "call_id": cid, "ts": ts}
            ev.update(kw)
            evs.append(ev)
            return ev

        line_opts = [_ABSENT, None, "cup", "prelievi", "prelievi", "cup", "altro"]
        has_offered = r.random() < 0.9
        if has_offered:
            add("offered", A, line=r.choice(line_opts))
            x = r.random()
            if x < 0.08:
                # several offered at the same instant, different lines
                for _ in range(r.randint(1, 2)):
                    add("offered", A, line=r.choice(line_opts), event_id=self.new_eid())
            elif x < 0.12:
                add("offered", A + r.randint(1, 5000), line=r.choice(line_opts))
            elif x < 0.15:
                # an earlier offered, so the anchor moves
                add("offered", A - r.randint(1, 3000), line=r.choice(line_opts), event_id=self.new_eid())
        ws = A
        if r.random() < 0.85:
            ae = A + r.choice([40000, 40000, 39999, 41234, 0, 1])
            add("announcement_end", ae)
            ws = ae
            if r.random() < 0.05:
                add("announcement_end", ae + r.randint(-2000, 2000))
            if r.random() < 0.7:
                add("queued", ae + r.randint(0, 200))
        elif r.random() < 0.6:
            q = A + r.randint(0, 45000)
            add("queued", q)
            ws = q
        x = r.random()
        q = self.month_quality(A)
        if x < 0.72:
            if r.random() < 0.4:
                w = r.choice(self.WAITS)
            elif r.random() < q:
                w = r.randint(140000, 400000)
            else:
                w = r.randint(0, 139999)
            if r.random() < 0.04:
                w = -r.randint(1, 30000)  # answered before announcement_end
            ans = ws + w
            add("answered", ans, agent=r.choice(["op1", "op2", "opé", "op" + "9" * 10]))
            if r.random() < 0.05:
                add("answered", ans + r.randint(0, 10000), agent="op7")
            if r.random() < 0.05:
                add("abandoned", ans + r.randint(-5000, 5000))
            y = r.random()
            if y < 0.8:
                add("ended", ans + r.choice([0, 1, 999, r.randint(1000, 600000)]))
                if r.random() < 0.05:
                    add("ended", ans + r.randint(0, 900000))
            elif y < 0.85:
                add("ended", ans - r.randint(1, 5000))  # before answered: talk floored at 0
        elif x < 0.84:
            ab = ws + r.choice(self.WAITS + [r.randint(-5000, 300000)])
            add("abandoned", ab)
            if r.random() < 0.15:
                add("overflow", ab + r.choice([0, 0, -1, 1, 5000]), reason="queue_full")
        elif x < 0.93:
            ov = ws + r.randint(-1000, 300000)
            add("overflow", ov, reason=r.choice(["queue_full", "max_wait", "closed", _ABSENT, None]))
            if r.random() < 0.15:
                add("abandoned", ov + r.choice([0, 1, 5000]))
        # else: open -> unresolved
        nb = r.choices([0, 1, 2, 3], [6, 3, 1, 1])[0]
        for _ in range(nb):
            add("booking", A + r.randint(30000, 600000), booking=r.choice(["book", "cancel", "move"]),
                agent=r.choice([_ABSENT, "op1"]))
        if r.random() < 0.05:
            # a booking made long before anything else (moves the anchor when no offered)
            add("booking", A - r.randint(1000, 100000), booking="book")

        for ev in evs:
            if "event_id" not in ev and r.random() < 0.5:
                ev["event_id"] = self.new_eid()
            if r.random() < 0.1 and "caller" not in ev:
                ev["caller"] = "+39 0364 %06d" % r.randrange(10 ** 6)
            self.emit_with_dups(ev)

    def emit_with_dups(self, ev):
        r = self.r
        self.emit(self.render(ev))
        x = r.random()
        if x < 0.12:
            # same event re-sent in another ts form (same instant -> same key)
            self.emit(self.render(ev, ts_form=r.choice(["int", "local", "Z", "z", "other"])))
        elif x < 0.16 and ev.get("event_id") not in (None, _ABSENT):
            # same event_id, different content: whichever comes first wins
            ev2 = dict(ev)
            mut = r.randrange(4)
            if mut == 0:
                ev2["ts"] = ev["ts"] + r.randint(-100000, 100000)
            elif mut == 1:
                ev2["type"] = r.choice(["answered", "abandoned", "overflow"])
                ev2["agent"] = "opX"
            elif mut == 2:
                ev2["line"] = "prelievi"
            else:
                ev2["call_id"] = "other-call-%d" % r.randrange(10 ** 6)
            self.emit(self.render(ev2))
        elif x < 0.18 and ev.get("event_id") not in (None, _ABSENT):
            # the same event without its event_id: a distinct key -> distinct event
            ev2 = dict(ev)
            del ev2["event_id"]
            self.emit(self.render(ev2))

    def agents(self):
        r = self.r
        for _ in range(300):
            d = self.pick_day()
            ts = local_ms(d, r.randrange(7, 19), r.randrange(60), r.randrange(60), r.randrange(1000))
            ev = {"type": r.choice(["agent_login", "agent_logout", "agent_pause", "agent_resume"]),
                  "ts": ts, "agent": r.choice(["op1", "op2", "op3"])}
            if r.random() < 0.3:
                ev["event_id"] = self.new_eid()
            if r.random() < 0.1:
                ev["call_id"] = None
            self.emit_with_dups(ev)

    # ---------- malformed ----------
    def malformed(self):
        r = self.r
        good_ts = '"2019-03-04T09:00:05.250+01:00"'

        def obj(**kw):
            base = {"type": '"offered"', "call_id": '"bad-%d"' % r.randrange(10 ** 9), "ts": good_ts}
            for k, v in kw.items():
                if v is None:
                    base.pop(k, None)
                else:
                    base[k] = v
            return ("{" + ",".join('"%s":%s' % (k, v) for k, v in base.items()) + "}").encode()

        bad = []
        # missing required / bad type
        bad += [obj(call_id=None), obj(type=None), obj(ts=None), obj(ts="null"), obj(type="null"),
                obj(call_id="null"), obj(type='"Offered"'), obj(type='"foo"'), obj(type="5"),
                obj(type='""'), obj(type='"answered"'),  # answered without agent
                obj(type='"booking"'), obj(type='"booking"', booking='"steal"'),
                obj(booking='"steal"'), obj(booking='"BOOK"'), obj(booking="1"),
                obj(type='"agent_login"', call_id=None),  # agent event without agent
                obj(type='"agent_login"', call_id="5", agent='"op1"'),
                obj(type='"agent_pause"', call_id='""', agent='"op1"'),
                obj(type='"answered"', agent="null")]
        # bad ts forms
        for t in ['"2019-03-04T09:00:05+0100"', '"2019-03-04T09:00:05,5+01:00"', '"2019-03-04T09:00:05"',
                  '"2019-03-04T09:00+01:00"', '"2019-03-04T09:00:60+01:00"', '"2019-03-04T24:00:00+01:00"',
                  '"2019-02-29T09:00:00Z"', '"2019-13-01T09:00:00Z"', '"2019-00-10T09:00:00Z"',
                  '"2019-04-31T09:00:00Z"', '"2019-03-04T09:00:05.+01:00"', '"2019-03-04T09:00:05+24:00"',
                  '"2019-03-04T09:00:05+01:60"', '"2019-3-4T09:00:05Z"', '"2019-03-04T09:00:05Z "',
                  '" 2019-03-04T09:00:05Z"', '"2019-03-04  09:00:05Z"', '"2019-03-04_09:00:05Z"',
                  '"2019-03-04T9:00:05Z"', '"20190304T090005Z"', '"2019-03-04T09:00:05+01"',
                  '"2019-03-04T09:00:05 +01:00"', '"2019-03-04T09:00:05UTC"', '"2019-03-04T09:00:05GMT"',
                  '"+2019-03-04T09:00:05Z"', '"2019-03-04T09:00:05.123456789012-01:00 "',
                  '"2019-03-04T09:00:05\\u002B01:00x"', '"１９-03-04T09:00:05Z"', '"2019-03-04T09:00:05.1２Z"',
                  '"1969-12-31T23:59:59.999Z"', '"1970-01-01T00:59:59.999+01:00"', '"2101-01-01T00:00:00Z"',
                  '"2100-12-31T23:30:00-01:00"', '"0000-01-01T00:00:00Z"', '""', '"now"',
                  "1551686400000.0", "1.5516864e12", "1551686400000e0", "true", "false", "-1", "4133980800000",
                  "99999999999999999999999", "[1551686400000]", '{"ms":1551686400000}', "-1551686400000",
                  '"2019-02-29 09:00:00z"', '"2019-03-04T09:00:05-25:00"', '"2019-03-04T09:00:05.Z"']:
            bad.append(obj(ts=t))
        # wrong JSON types / lengths
        bad += [obj(call_id="123"), obj(call_id='""'), obj(call_id='"%s"' % ("x" * 129)),
                obj(call_id='"%s"' % ("é" * 129)), obj(call_id='"%s"' % ("𝄞" * 129)),
                obj(line="5"), obj(line='""'), obj(line="[]"), obj(line='"%s"' % ("p" * 129)),
                obj(event_id="7"), obj(event_id='""'), obj(event_id="{}"), obj(agent="1"), obj(agent='""'),
                obj(reason="false"), obj(reason='""'), obj(caller="393331234567"), obj(caller='""'),
                obj(caller='"%s"' % ("9" * 129)), obj(type='"overflow"', reason='"%s"' % ("r" * 129)),
                obj(call_id="true"), obj(call_id='["a"]')]
        # JSON-level garbage
        bad += [b"", b" ", b"\t", b"null", b"[]", b'"offered"', b"42", b"{", b"}", b"{}",
                b'{"type":"offered","call_id":"x","ts":1551686400000,}',
                b"{'type':'offered','call_id':'x','ts':1551686400000}",
                b'{"type":"offered","call_id":"x","ts":NaN}',
                b'{"type":"offered","call_id":"x","ts":Infinity}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"x":NaN}',
                b'{"type":"offered","call_id":"x","ts":1551686400000} {}',
                b'{"type":"offered","call_id":"x","ts":01551686400000}',
                b'{"type":"offered","call_id":"x","ts":+1551686400000}',
                b'{"type":"offered","call_id":"x\tz","ts":1551686400000}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"x":"\\q"}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"x":[1,]}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"x":tru}',
                b'{"type":"offered","call_id":"x","ts":1551686400000}//c',
                b'\xef\xbb\xbf{"type":"offered","call_id":"bom","ts":1551686400000}']
        # invalid UTF-8
        bad += [b'{"type":"offered","call_id":"x\xff","ts":1551686400000}',
                b'{"type":"offered","call_id":"x\xc0\xaf","ts":1551686400000}',
                b'{"type":"offered","call_id":"x\xed\xa0\x80","ts":1551686400000}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"z":"\xe2\x82"}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"z":"\xf4\x90\x80\x80"}']
        # lone surrogates anywhere
        bad += [b'{"type":"offered","call_id":"x\\ud800","ts":1551686400000}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"unk":"\\udc00"}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"unk":{"deep":["\\uD800x"]}}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"\\ud800":1}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"unk":"\\udc00\\ud800"}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"unk":"\\ud83d"}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"caller":"\\ud83d\\u0041"}']
        # duplicate keys anywhere
        bad += [b'{"type":"offered","call_id":"x","ts":1551686400000,"type":"offered"}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"ts":1551686400000}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"x":1,"x":1}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"x":{"a":1,"a":1}}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"x":[{"a":1,"b":{"c":1,"c":2}}]}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"\\u0074ype":"offered"}',
                b'{"type":"offered","call_id":"x","ts":1551686400000,"line":null,"line":"cup"}']
        # oversized
        def padded(cid, n):
            head = b'{"type":"offered","call_id":"' + cid + b'","ts":1551686400000,"pad":"'
            return head + b"a" * (n - len(head) - 2) + b'"}'
        bad.append(padded(b"big1", 65537))
        bad.append(b'{"type":"offered","call_id":"big2","ts":1551686400000,"pad":"' + "é".encode() * 40000 + b'"}')
        for b_ in bad:
            self.emit(b_)
        self.n_bad = len(bad)
        # valid edge lines (not malformed)
        good = []
        good.append(padded(b"big-ok", 65536))
        good.append(('{"type":"offered","call_id":"%s","ts":1551690000000}' % ("é" * 128)).encode())
        good.append(('{"type":"offered","call_id":"%s","ts":1551690000000}' % ("𝄞" * 128)).encode())
        good.append(('{"type":"offered","call_id":"%s","ts":1551690000000}' % ("\\ud834\\udd1e" * 128)).encode())
        good.append(b'{"type":"offered","call_id":"pair","ts":1551690000000,"caller":"\\ud83d\\ude00"}')
        good.append(b'{"type":"offered","call_id":"ok-1","ts":"2019-03-04T09:00:00.9999+01:00","line":null,"reason":null,"event_id":null}')
        good.append(b'{"type":"answered","call_id":"ok-1","ts":"2019-03-04T08:01:40.9999999z","agent":"a"}')
        good.append(b'{"type":"offered","call_id":"ok-2","ts":"2019-03-04 09:00:00.5-00:00","line":"prelievi"}')
        good.append(b'{"type":"overflow","call_id":"ok-2","ts":"2019-03-04t08:10:00+23:59"}')
        good.append(b'{"type":"agent_login","ts":"2100-12-31T23:59:59.999Z","agent":"late","call_id":null}')
        good.append(b'{"type":"agent_logout","ts":0,"agent":"early"}')
        good.append(b'{"type":"offered","call_id":"ok-3","ts":"2019-03-05T10:00:00+01:00","x":"\\u0000","y":-0.0e-0,"z":1E400}')
        good.append(b'{"type":"abandoned","call_id":"ok-3","ts":"2019-03-05T10:00:01.0000000000000000001+01:00"}')
        good.append(b'{"call_id":"ok-4","ts":1551776400000,"type":"offered","booking":"move"}')
        good.append(b'{"call_id":"ok-4","ts":1551776460000,"type":"answered","agent":"a","booking":"cancel","line":"prelievi"}')
        good.append(b'{"call_id":"ok-4","ts":1551776460000,"type":"booking","booking":"book","reason":"r"}')
        good.append(b'{"call_id":"ok-4","ts":1551776460000,"type":"booking","booking":"cancel"}')
        good.append(b'{"call_id":"ok-4","ts":1551776460000,"type":"booking","booking":"cancel"}')  # dup
        good.append(b'{"call_id":"ok-4","ts":1551776460000,"type":"booking","booking":"cancel","agent":"z"}')
        for g in good:
            self.emit(g)

    def build(self):
        for _ in range(self.ncalls):
            self.call()
        self.agents()
        self.malformed()
        self.r.shuffle(self.lines)
        out = bytearray()
        for i, l in enumerate(self.lines):
            out += l
            out += b"\r\n" if self.r.random() < 0.3 else b"\n"
        if self.r.random() < 2:  # last line without terminator
            out += b'{"type":"agent_resume","ts":1551690000000,"agent":"last"}'
        return bytes(out)


class _Absent:
    pass


_ABSENT = _Absent()


def main(argv):
    out = argv[0]
    seed, n = 20261125, 3000
    i = 1
    while i < len(argv):
        if argv[i] == "--seed":
            seed = int(argv[i + 1])
        elif argv[i] == "--calls":
            n = int(argv[i + 1])
        i += 2
    g = Gen(seed, n)
    data = g.build()
    with open(out, "wb") as f:
        f.write(data)
    print("wrote %s: %d lines (%d malformed by construction)" % (out, len(g.lines) + 1, g.n_bad))


if __name__ == "__main__":
    main(sys.argv[1:])
