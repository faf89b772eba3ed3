"""Label caches from the command line: check one, salvage a damaged one, copy one safely.

    python -m alenv.cache check PATH             verify every row; exit 1 if any was lost
    python -m alenv.cache salvage PATH [--out NEW]
                                                 copy every intact row into a fresh cache NEW
                                                 (default <stem>.salvaged<suffix> beside PATH)
    python -m alenv.cache copy PATH NEW          a verified copy, also while runs write to PATH

Exit status: 0 all intact, 1 rows were lost (salvage, copy: the rest was copied), 2 the file is unusable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alenv.oracles.base import OracleError
from alenv.oracles.salvage import check_cache, salvage_cache


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m alenv.cache", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="verify every row of a label cache")
    check.add_argument("path")
    salvage = sub.add_parser("salvage", help="copy every intact row into a fresh cache")
    salvage.add_argument("path")
    salvage.add_argument("--out", default=None, help="the new cache (must not exist)")
    copy = sub.add_parser("copy", help="a verified copy of a cache, also while runs write to it")
    copy.add_argument("path")
    copy.add_argument("out")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        report = check_cache(args.path)
        print(report.summary())
        if report.error is not None:
            return 2
        if not report.ok:
            print(f"to keep the intact labels: python -m alenv.cache salvage '{args.path}'")
        return 0 if report.ok else 1
    try:
        report, out = salvage_cache(args.path, args.out)
    except OracleError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {len(report.intact)} labels to {out}")
    if args.command == "salvage":
        swap = f"mv '{args.path}' '{args.path}.corrupt' && mv '{out}' '{args.path}'"
        print(f"to use it in place of the damaged cache: {swap}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
