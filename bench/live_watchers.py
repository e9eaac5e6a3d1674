#!/usr/bin/env python3
"""Issue 14's acceptance: ingest throughput with 50 concurrent `Live.WatchQueue` watchers,
one of which never reads its stream, within 10 % of the throughput with none.

    python3 bench/live_watchers.py [--rounds 5] [--watchers 50] [--events 300000]
        [--bin target/release/netwait] [--example target/release/examples/live_watch]

Each round runs both cases back to back (their order alternates between rounds): a fresh
data directory, `netwait serve --calendar 24x7`, then `live_watch ingest ADDR W FILE`
(one gRPC push stream of 5,000-line messages, timed from the first message to the
durable answer), then the server is stopped. FILE is the first EVENTS lines of the seed
year. Prints each round's events/s and ratio (watchers / none), the median of the
rounds' ratios, the ratio of the medians and the worst round.
"""
import argparse, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def one(bin_, example, watchers, file):
    d = tempfile.mkdtemp(prefix="nwwatch-")
    serve = subprocess.Popen([bin_, "serve", "--data", d, "--calendar", "24x7", "--listen",
                              "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=dict(os.environ, RUST_LOG="warn"))
    try:
        line = serve.stdout.readline()
        addr = line.strip().removeprefix("netwait listening on ")
        out = subprocess.run([example, "ingest", addr, str(watchers), file], capture_output=True,
                             text=True, check=True).stdout
        m = re.search(r"= (\d+) events/s", out)
        if not m:
            sys.exit(f"no rate in {out!r}")
        return int(m.group(1))
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--watchers", type=int, default=50)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--seed", default="/tmp/seed2019.ndjson")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/netwait"))
    ap.add_argument("--example", default=os.path.join(ROOT, "target/release/examples/live_watch"))
    a = ap.parse_args()
    if not os.path.exists(a.seed):
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/tools/gen_seed2019.py"), a.seed],
                       check=True, stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="nwwatch-file-")
    file = os.path.join(work, "events.ndjson")
    with open(a.seed) as src, open(file, "w") as dst:
        for i, line in enumerate(src):
            if i >= a.events:
                break
            dst.write(line)
    rounds = []
    try:
        for r in range(a.rounds):
            order = [0, a.watchers] if r % 2 == 0 else [a.watchers, 0]
            rate = {w: one(a.bin, a.example, w, file) for w in order}
            ratio = rate[a.watchers] / rate[0]
            rounds.append((rate[0], rate[a.watchers], ratio))
            print(f"round {r + 1}: none {rate[0]} events/s, {a.watchers} watchers "
                  f"{rate[a.watchers]} events/s, ratio {ratio:.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = statistics.median
    print(json.dumps({
        "events": a.events, "watchers": a.watchers, "rounds": a.rounds,
        "none_median": m(x[0] for x in rounds), "watched_median": m(x[1] for x in rounds),
        "ratio_of_medians": round(m(x[1] for x in rounds) / m(x[0] for x in rounds), 3),
        "median_ratio": round(m(x[2] for x in rounds), 3),
        "worst_ratio": round(min(x[2] for x in rounds), 3),
    }))


if __name__ == "__main__":
    main()
