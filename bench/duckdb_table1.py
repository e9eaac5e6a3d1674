#!/usr/bin/env python3
"""Reference timing: spec Table 1 (metrics.md §1-4) from canonical NDJSON call events, in DuckDB.

    python3 bench/duckdb_table1.py FILE [--from 2019-01-01 --to 2020-01-01] [--threshold 140]

Prints a JSON object with the Table 1 keys plus `elapsed_s` (wall time of connect +
read_json + query). Needs only `pip install duckdb` and the standard library.

Simplifications vs the full spec (fine for the seed file, which is clean):
- no validation / dead-letter handling: rows are assumed well-formed;
- dedupe only matters for `bookings` (min/max ignore duplicates): distinct event_id,
  falling back to call_id+ts+booking when event_id is absent;
- the service-hours filter (§3) is skipped: every call in the seed is in hours, so
  `out_of_hours` is not computed; open calls (no outcome) are simply not counted.
"""
import argparse, json, time
import duckdb

SQL = """
WITH ev AS (   -- ts is either epoch-ms digits or RFC 3339 with offset: normalise to UTC epoch ms
  SELECT call_id, type, event_id, booking,
         CASE WHEN regexp_full_match(ts, '[0-9]+') THEN CAST(ts AS BIGINT)
              ELSE epoch_ms(CAST(ts AS TIMESTAMPTZ)) END AS ms
  FROM read_json(?, format = 'newline_delimited',
                 columns = {call_id: 'VARCHAR', type: 'VARCHAR', ts: 'VARCHAR',
                            event_id: 'VARCHAR', booking: 'VARCHAR'})
  WHERE call_id IS NOT NULL            -- agent events have no call_id
),
c AS (         -- one record per call (§2)
  SELECT call_id,
         coalesce(min(ms) FILTER (type = 'offered'), min(ms))  AS anchor,
         min(ms) FILTER (type = 'announcement_end')            AS ann,
         min(ms) FILTER (type = 'queued')                      AS qd,
         min(ms) FILTER (type = 'answered')                    AS ans,
         min(ms) FILTER (type = 'ended')                       AS ended,
         min(ms) FILTER (type = 'abandoned')                   AS abd,
         min(ms) FILTER (type = 'overflow')                    AS ovf,
         count(DISTINCT coalesce(event_id, ms || '/' || booking)) FILTER (type = 'booking') AS nbook
  FROM ev GROUP BY call_id
),
r AS (         -- outcome, net wait and talk time (seconds)
  SELECT CASE WHEN ans IS NOT NULL THEN 'answered'
              WHEN abd IS NOT NULL AND (ovf IS NULL OR abd <= ovf) THEN 'abandoned'
              WHEN ovf IS NOT NULL THEN 'overflow' END                   AS outcome,
         greatest(ans - coalesce(ann, qd, anchor), 0) / 1000.0            AS wait,
         greatest(ended - ans, 0) / 1000.0                                AS talk,
         nbook
  FROM c
  -- period: anchor's Europe/Rome local date in [from, to)
  WHERE CAST(timezone('Europe/Rome', to_timestamp(anchor / 1000.0)) AS DATE) >= CAST(? AS DATE)
    AND CAST(timezone('Europe/Rome', to_timestamp(anchor / 1000.0)) AS DATE) <  CAST(? AS DATE)
)
SELECT count(outcome)                                        AS calls_received,
       count(*) FILTER (outcome = 'answered')                AS answered,
       count(*) FILTER (outcome = 'overflow')                AS overflow,
       count(*) FILTER (outcome = 'abandoned')               AS abandoned,
       count(*) FILTER (outcome = 'answered' AND wait < 1)   AS answered_without_wait,
       count(*) FILTER (outcome = 'answered' AND wait >= 1 AND wait < ?) AS answered_wait_within_threshold,
       count(*) FILTER (outcome = 'answered' AND wait >= ?)  AS answered_wait_over_threshold,
       max(wait)  FILTER (outcome = 'answered')              AS max_wait_s,
       avg(wait)  FILTER (outcome = 'answered')              AS avg_wait_s,
       avg(talk)  FILTER (outcome = 'answered')              AS avg_talk_s,   -- NULL talk (no ended) is skipped
       coalesce(sum(nbook) FILTER (outcome IS NOT NULL), 0)  AS bookings
FROM r
"""

def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--from", dest="frm", default="2019-01-01")
    p.add_argument("--to", default="2020-01-01")
    p.add_argument("--threshold", type=float, default=140.0)
    a = p.parse_args()
    t0 = time.perf_counter()
    con = duckdb.connect()             # in-memory, default threads
    cur = con.execute(SQL, [a.file, a.frm, a.to, a.threshold, a.threshold])
    row = cur.fetchone()
    elapsed = time.perf_counter() - t0
    out = {d[0]: (float(v) if v is not None and d[0].endswith("_s") else v)
           for d, v in zip(cur.description, row)}
    out.update(threshold_s=a.threshold, duckdb_version=duckdb.__version__,
               elapsed_s=round(elapsed, 3))
    print(json.dumps(out, indent=2))

if __name__ == "__main__":
    main()
