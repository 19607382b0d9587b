"""Entry point of the lifeline's keeper process (see andon.runtime.lifeline)."""

from __future__ import annotations

import sys

from andon.runtime.lifeline import keep

if __name__ == "__main__":
    keep(float(sys.argv[1]))
