#!/usr/bin/env python3
"""STA launcher: ``python sta.py COMMAND ...`` (see ``python sta.py --help``)."""
from sta.cli import main

raise SystemExit(main())
