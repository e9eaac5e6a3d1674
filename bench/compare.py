#!/usr/bin/env python3
"""The acceptance benchmark: `netwait import` + `netwait stats table1` of the seed year,
against DuckDB computing the same Table 1 from the same file, in the same run.

    python3 bench/compare.py [--rounds 5] [--file /tmp/seed2019.ndjson] [--bin target/release/netwait]

Each round: a fresh data dir, `netwait import --data D FILE`, then
`netwait stats table1 --data D --from 2019-01-01 --to 2020-01-01 --json` (wall time of both
processes, peak RSS of each via /usr/bin/time), then bench/duckdb_table1.py on the file.
Prints medians, the ratio netwait / DuckDB, events/s, and checks both give the seed figures.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEED = {"calls_received": 181795, "answered": 97385, "overflow": 47154, "abandoned": 37256,
        "answered_without_wait": 13745, "answered_wait_within_threshold": 31358,
        "answered_wait_over_threshold": 52282, "bookings": 88210}


def timed(cmd):
    """Runs cmd under /usr/bin/time; returns (wall s, peak RSS MiB, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True,
                       env=dict(os.environ, RUST_LOG="warn"))
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{cmd} failed: {p.stderr}")
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return wall, rss_kb / 1024, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--file", default="/tmp/seed2019.ndjson")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/netwait"))
    a = ap.parse_args()
    if not os.path.exists(a.file):
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/tools/gen_seed2019.py"), a.file], check=True)
    lines = sum(1 for _ in open(a.file, "rb"))
    nw, imp, st, dk, rss_imp, rss_st = [], [], [], [], [], []
    for _ in range(a.rounds):
        d = tempfile.mkdtemp(prefix="nwbench-")
        try:
            w1, r1, out = timed([a.bin, "import", "--data", d, a.file])
            w2, r2, out = timed([a.bin, "stats", "table1", "--data", d, "--from", "2019-01-01",
                                 "--to", "2020-01-01", "--json"])
        finally:
            shutil.rmtree(d, ignore_errors=True)
        t = json.loads(out)
        assert all(t[k] == v for k, v in SEED.items()), t
        imp.append(w1); st.append(w2); nw.append(w1 + w2); rss_imp.append(r1); rss_st.append(r2)
        p = subprocess.run([sys.executable, os.path.join(HERE, "duckdb_table1.py"), a.file],
                           capture_output=True, text=True, check=True)
        r = json.loads(p.stdout)
        assert all(r[k] == v for k, v in SEED.items()), r
        dk.append(r["elapsed_s"])
    m = statistics.median
    print(json.dumps({
        "rounds": a.rounds, "events": lines,
        "netwait_import_s": round(m(imp), 3), "netwait_stats_s": round(m(st), 3),
        "netwait_total_s": round(m(nw), 3), "duckdb_s": round(m(dk), 3),
        "ratio_netwait_over_duckdb": round(m(nw) / m(dk), 3),
        # Each round's own ratio: the machine's speed drifts between rounds, both sides
        # of one round see about the same machine.
        "ratio_per_round_median": round(m([a / b for a, b in zip(nw, dk)]), 3),
        "ratio_per_round_max": round(max(a / b for a, b in zip(nw, dk)), 3),
        "import_events_per_s": round(lines / m(imp)),
        "peak_rss_import_mib": round(max(rss_imp), 1), "peak_rss_stats_mib": round(max(rss_st), 1),
        "all_runs_total_s": [round(x, 3) for x in nw], "all_runs_duckdb_s": dk,
    }, indent=2))


if __name__ == "__main__":
    main()
