"""The longer run of tests/test_lifecycle_machine.py: the task lifecycle state machine
with more examples and longer sequences of submit / cancel / answer / retry / restart.

    python -m bench.lifecycle [--examples 200] [--steps 30]

Prints how many sequences and steps ran, and the time; a broken invariant raises with
hypothesis's shortest sequence that breaks it.
"""

from __future__ import annotations

import argparse
import time

from tests.test_lifecycle_machine import explore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    started = time.monotonic()
    explore(args.examples, args.steps)
    print(
        f"{args.examples} sequences of up to {args.steps} steps: every invariant held "
        f"({time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
