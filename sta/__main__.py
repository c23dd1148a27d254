"""``python -m sta``: the same as ``python sta.py``."""
from sta.cli import main

raise SystemExit(main())
