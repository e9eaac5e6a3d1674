#!/usr/bin/env python3
"""Import and open on a long history: stores of 1, 5 and 10 years, two builds interleaved.

    python3 bench/history.py build NETWAIT STORES SEED Y1 ... Y9
        # STORES/y1, y5, y10: the seed year, then the shifted years imported one by one
    python3 bench/history.py measure NEW3000 SERVE_READY NAME=NETWAIT:STORES ... [--rounds N]

`measure`, per round, per store size, per build (in turn): a copy of the store (synced to
disk first) takes NEW3000 (`netwait import`, wall and peak RSS from /usr/bin/time -v); `stats table1 --data`
on the store (wall); `serve` ready (SERVE_READY: the `serve_ready` example, one round).
Prints each figure's median over the rounds, per build.
"""
import os, re, shutil, statistics, subprocess, sys, tempfile, time

SIZES = (1, 5, 10)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def build(netwait, stores, inputs):
    work = os.path.join(stores, "work")
    shutil.rmtree(work, ignore_errors=True)
    for year, path in enumerate(inputs, start=1):
        t = time.time()
        run([netwait, "import", "--data", work, path])
        print(f"year {year}: {time.time() - t:.1f} s", flush=True)
        if year in SIZES:
            dest = os.path.join(stores, f"y{year}")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(work, dest)
    shutil.rmtree(work)


def timed_import(netwait, store, new):
    with tempfile.TemporaryDirectory(dir=os.path.dirname(store)) as tmp:
        copy = os.path.join(tmp, "s")
        shutil.copytree(store, copy)
        # The copy's dirty pages are written back now, not by the import's first fsync.
        os.sync()
        r = run(["/usr/bin/time", "-v", netwait, "import", "--data", copy, new])
        wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+(?:\.\d+)?)$", r.stderr, re.M)
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
        secs = float(wall.group(2)) + 60 * float(wall.group(1) or 0)
        return secs * 1e3, int(rss.group(1)) / 1024


def timed_stats(netwait, store):
    t = time.perf_counter()
    run([netwait, "stats", "table1", "--data", store, "--from", "2019-01-01", "--to", "2020-01-01", "--json"])
    return (time.perf_counter() - t) * 1e3


def serve_ready(tool, netwait, store, port):
    out = run([tool, netwait, store, f"127.0.0.1:{port}", "1"]).stdout
    return float(re.search(r"best (\d+(?:\.\d+)?) ms", out).group(1))


def measure(new, tool, builds, rounds):
    figures = {}
    for r in range(rounds):
        for size in SIZES:
            for name, (netwait, stores) in builds.items():
                store = os.path.join(stores, f"y{size}")
                imp, rss = timed_import(netwait, store, new)
                stats = timed_stats(netwait, store)
                ready = serve_ready(tool, netwait, store, 50071 + r)
                for key, v in (("import ms", imp), ("import MiB", rss), ("stats ms", stats), ("serve ready ms", ready)):
                    figures.setdefault((size, name, key), []).append(v)
                print(f"round {r + 1} {size:2} y {name:7} import {imp:6.0f} ms {rss:5.0f} MiB  stats {stats:5.0f} ms  serve ready {ready:5.0f} ms", flush=True)
    print("\nmedians:")
    for size in SIZES:
        for name in builds:
            row = "  ".join(f"{k} {statistics.median(figures[(size, name, k)]):.0f}" for k in ("import ms", "import MiB", "stats ms", "serve ready ms"))
            print(f"{size:2} years {name:7} {row}")


def main():
    args = sys.argv[1:]
    if args[:1] == ["build"] and len(args) >= 4:
        build(args[1], args[2], args[3:])
    elif args[:1] == ["measure"]:
        rounds = 3
        if "--rounds" in args:
            i = args.index("--rounds")
            rounds = int(args[i + 1])
            del args[i : i + 2]
        builds = dict(b.split("=", 1) for b in args[3:])
        builds = {k: tuple(v.split(":", 1)) for k, v in builds.items()}
        measure(args[1], args[2], builds, rounds)
    else:
        sys.exit(__doc__)


main()
