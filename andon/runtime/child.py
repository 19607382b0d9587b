"""Entry point of `TaskContext.run_process`: read (function, args) pickled on stdin,
write (ok, result-or-exception) pickled on stdout."""

from __future__ import annotations

import os
import pickle
import sys


def main() -> None:
    # The function's own prints must not corrupt the result channel.
    result_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    fn, args = pickle.loads(sys.stdin.buffer.read())
    try:
        outcome = (True, fn(*args))
    except Exception as exc:
        outcome = (False, exc)
    result_out.write(pickle.dumps(outcome))
    result_out.flush()


if __name__ == "__main__":
    main()
