"""Do two run databases hold the same decisions? Predictions, validations and fills, row by row.

    .venv/bin/python bench/compare_runs.py BEFORE.db AFTER.db

For a change that must not change behaviour (a refactor): replay the same input before and after
(``ares-stream replay PATH --db before.db --no-report``) and compare. Exit 0 when every table is
identical, 1 with the first differing row otherwise.
"""

from __future__ import annotations

import sqlite3
import sys

TABLES = ("predictions", "validations", "fills")


def rows(path: str, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4").fetchall()


def main(before: str, after: str) -> int:
    for path in (before, after):
        try:
            sqlite3.connect(f"file:{path}?mode=ro", uri=True).close()
            rows(path, "runs")
        except sqlite3.Error as exc:
            print(f"{path}: not a run database ({exc})", file=sys.stderr)
            return 2
    same = True
    for table in TABLES:
        a, b = rows(before, table), rows(after, table)
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        ok = a == b
        same &= ok
        verdict = "identical" if ok else f"DIFFER (first at row {first})"
        print(f"{table:<12} {len(a):>9,} vs {len(b):>9,} rows: {verdict}")
        if first is not None:
            print(f"  before: {a[first]}\n  after:  {b[first]}")
    return 0 if same else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
