"""Build a synthetic masked copy of LFW (or of RMFRD's unmasked images).

Usage::

    python data_scripts/build_masked_dataset.py --dataset lfw --split DevTrain --workers 2
    MFR_QUICK=1 python data_scripts/build_masked_dataset.py        # first 60 images only

The copy goes to ``$MFR_CACHE_DIR/masked/<dataset>/`` with ``manifest.csv``.
Running the command again completes an interrupted build and reuses what is done.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

try:
    from course_lib.masked_dataset import DATASETS, build_masked_dataset
    from course_lib.masks import MASK_TYPES
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from course_lib.masked_dataset import DATASETS, build_masked_dataset
    from course_lib.masks import MASK_TYPES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic masked copy of a face dataset into the course cache.")
    parser.add_argument("--dataset", choices=DATASETS, default="lfw", help="source dataset (default: lfw)")
    parser.add_argument("--split", choices=("DevTrain", "DevTest", "all"), default="DevTrain", help="LFW people split (default: DevTrain)")
    parser.add_argument("--mask-types", nargs="+", choices=MASK_TYPES, default=list(MASK_TYPES), metavar="TYPE",
                        help=f"mask types to draw from (default: all of {', '.join(MASK_TYPES)})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: number of CPU cores)")
    parser.add_argument("--limit", type=int, default=None, help="mask only the first N images (default: 60 in quick mode, all otherwise)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mask-type rule and the drawings (default: 0)")
    parser.add_argument("--min-score", type=float, default=0.9, help="smallest MTCNN confidence accepted (default: 0.9)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    summary = build_masked_dataset(
        dataset=args.dataset,
        split=args.split,
        mask_types=args.mask_types,
        workers=args.workers,
        limit=args.limit,
        seed=args.seed,
        min_score=args.min_score,
        progress=not args.quiet,
    )
    print(summary)
    print(f"Output: {summary.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
