"""Fetch, verify and describe the course datasets from a checkout: ``python data_scripts/mfr_data.py --help``.

Same tool as the ``mfr-data`` console script; it works without installing the
package because it puts the repository root on ``sys.path`` when needed.
"""

import sys
from pathlib import Path

try:
    from course_lib.data.cli import main
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from course_lib.data.cli import main

if __name__ == "__main__":
    sys.exit(main())
