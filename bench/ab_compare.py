#!/usr/bin/env python3
"""Two builds against each other and DuckDB, interleaved (the machine's speed drifts):

    python3 bench/ab_compare.py BIN_A BIN_B ROUNDS [--import-only | --stats-only DATA]

Default: each round runs `import` + `stats table1` of the seed year (/tmp/seed2019.ndjson)
with both builds (order alternating) and bench/duckdb_table1.py; prints each build's
medians, its per-round ratio to DuckDB (median, max), and B/A per round.
--import-only: imports alone, no DuckDB. --stats-only DATA: `stats table1` of DATA alone.
"""
import subprocess, sys, time, shutil, statistics, json, os, tempfile
A, B, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else None
HERE = os.path.dirname(os.path.abspath(__file__))
seed = '/tmp/seed2019.ndjson'
def nw(b):
    d = tempfile.mkdtemp(prefix='nwab-')
    t = time.perf_counter()
    subprocess.run([b, 'import', '--data', d, seed], check=True, capture_output=True)
    t1 = time.perf_counter()
    p = subprocess.run([b, 'stats', 'table1', '--data', d, '--from', '2019-01-01', '--to', '2020-01-01', '--json'], check=True, capture_output=True)
    t2 = time.perf_counter()
    shutil.rmtree(d)
    assert json.loads(p.stdout)['calls_received'] == 181795
    return t1 - t, t2 - t1
def duck():
    p = subprocess.run([sys.executable, '/work/main/bench/duckdb_table1.py', seed], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)['elapsed_s']
def timed(args):
    t = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - t
def import_only(b):
    d = tempfile.mkdtemp(prefix='nwab-')
    try:
        return timed([b, 'import', '--data', d, seed])
    finally:
        shutil.rmtree(d)
def stats_only(b):
    return timed([b, 'stats', 'table1', '--data', sys.argv[5], '--from', '2019-01-01', '--to', '2020-01-01', '--json'])
if mode in ('--import-only', '--stats-only'):
    run = import_only if mode == '--import-only' else stats_only
    res = {A: [], B: []}
    for r in range(rounds):
        for b in ([A, B] if r % 2 == 0 else [B, A]):
            res[b].append(run(b))
    for b in (A, B):
        print(f"{b}: median {statistics.median(res[b]):.4f} min {min(res[b]):.4f}")
    print("B/A per round median %.3f" % statistics.median([y / x for x, y in zip(res[A], res[B])]))
    sys.exit(0)
res = {A: [], B: []}; dk = []
for r in range(rounds):
    order = [A, B] if r % 2 == 0 else [B, A]
    for b in order:
        res[b].append(nw(b))
    dk.append(duck())
m = statistics.median
for b in (A, B):
    tot = [i + s for i, s in res[b]]
    rat = [x / y for x, y in zip(tot, dk)]
    print(f"{b}: import {m([i for i,_ in res[b]]):.4f} stats {m([s for _,s in res[b]]):.4f} total {m(tot):.4f}  ratio/DuckDB per round median {m(rat):.3f} max {max(rat):.3f}")
print(f"duckdb median {m(dk):.4f}")
print("B/A total per round median %.3f" % m([(bi+bs)/(ai+as_) for (ai,as_),(bi,bs) in zip(res[A],res[B])]))
