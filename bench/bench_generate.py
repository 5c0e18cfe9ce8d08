"""Time the synthetic world generator.

Usage::

    python bench/bench_generate.py                 # 5,000 and 50,000 companies, CSV
    python bench/bench_generate.py 5000 200000 --format parquet --rate
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from sf_ml.generate import _measure_positive_rate, generate_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[5000, 50000],
                        help="numbers of companies to generate")
    parser.add_argument("--format", default="csv", choices=["csv", "parquet"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default="2014-01-01")
    parser.add_argument("--end", default="2025-12-31")
    parser.add_argument("--rate", action="store_true",
                        help="also measure the in-scope positive rate (reads the files back)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            out = Path(tmp) / f"world_{size}"
            began = time.perf_counter()
            counts = generate_world(out, n_companies=size, start=args.start, end=args.end,
                                    seed=args.seed, file_format=args.format)
            seconds = time.perf_counter() - began
            rows = sum(counts.values())
            megabytes = sum(p.stat().st_size for p in out.iterdir()) / 1e6
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            line = (f"{size:>8} companies  {seconds:8.2f} s  {rows:>11,} rows  "
                    f"{rows / seconds:>12,.0f} rows/s  {megabytes:8.1f} MB  "
                    f"peak RSS {peak:,.0f} MB")
            if args.rate:
                measured = _measure_positive_rate(out)
                line += f"  positive rate {measured['rate']:.4f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
