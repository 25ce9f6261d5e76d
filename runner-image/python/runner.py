"""Python worker for the functions engine: speaks docs/protocol.md on stdin/stdout.

Run as `python3 runner.py`. Everything lives in the `functions_runtime` package next to this file;
this script only makes sure no bytecode is written (the container is read-only) before importing it.
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from functions_runtime.main import main  # noqa: E402  (must follow the sys.path/bytecode setup)

if __name__ == "__main__":
    main()
