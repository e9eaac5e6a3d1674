"""Runs netwait's SQL in chdb (ClickHouse 26.9 in-process) and compares the results
with those of the 18.16 server (issue 12 item 2).

Usage: deploy/python tests/tools/chdb_compat.py CASE.json
CASE.json (written by tests/clickhouse_chdb.rs): {"database", "ddl": [statements],
"tables": [{"name", "structure": "col Type, ...", "rows": path of its rows as
RowBinary}],
"queries": [{"sql", "expected": [sorted TabSeparated lines]}]}.
Exit 0 when every statement runs and every result equals the server's; else prints
each difference and exits 1.
"""

import json
import sys
import tempfile

from chdb import session


def main(path):
    case = json.load(open(path))
    db = case["database"]
    s = session.Session(tempfile.mkdtemp(prefix="chdb-compat-"))
    s.query(f"CREATE DATABASE {db}")
    s.query(f"USE {db}")
    for ddl in case["ddl"]:
        s.query(ddl)
    # The rows exactly as the store sends them (RowBinary, every column in order).
    for t in case["tables"]:
        s.query(
            f"INSERT INTO {db}.{t['name']} SELECT * FROM file('{t['rows']}', 'RowBinary', "
            f"'{t['structure']}')"
        )
    failed = 0
    for q in case["queries"]:
        got = s.query(q["sql"], "TabSeparated").bytes().decode()
        got = sorted(line for line in got.split("\n") if line)
        if got != q["expected"]:
            failed += 1
            print(f"DIFFERENT: {q['sql'][:300]}\n  chdb:  {got[:5]}\n  18.16: {q['expected'][:5]}")
    print(f"chdb {len(case['queries'])} queries, {failed} different")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
