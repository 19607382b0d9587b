"""The longer run of tests/test_schemathesis.py: schemathesis over `andon serve`'s
/openapi.json with every phase but the stateful one (examples, coverage, fuzzing) and
many more examples per operation, with and without auth:

    python -m bench.fuzz [--examples 300]

Prints, per run, what schemathesis reports (test cases generated, failures); any
failure is printed in full and the command exits 1.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.test_client import AndonServer
from tests.test_schemathesis import TOKEN, schemathesis


def run(examples: int) -> int:
    failed = 0
    for auth in ("no auth", "tokens"):
        with tempfile.TemporaryDirectory() as folder:
            workdir = Path(folder)
            args: tuple[str, ...] = ()
            headers: list[str] = []
            if auth == "tokens":
                tokens = workdir / "tokens"
                tokens.write_text(f"fuzzer user {TOKEN}\n")
                tokens.chmod(0o600)
                args = ("--auth", "tokens", "--tokens", str(tokens))
                headers = ["-H", f"Authorization: Bearer {TOKEN}"]
            with AndonServer(workdir, *args) as served:
                for routes, excluded, where in (
                    ("HTTP+JSON", "positive_data_acceptance", ("--exclude-path", "/")),
                    (
                        "JSON-RPC",
                        "positive_data_acceptance,negative_data_rejection",
                        ("--include-path", "/"),
                    ),
                ):
                    argv = schemathesis(
                        served.url,
                        "--exclude-checks",
                        excluded,
                        *where,
                        *headers,
                        examples=examples,
                        phases="examples,coverage,fuzzing",
                    )
                    done = subprocess.run(argv, capture_output=True, text=True)
                    found = re.search(r"(\d+) generated, .*", done.stdout)
                    print(f"{auth}, {routes}: {found.group(0) if found else '?'}", flush=True)
                    if done.returncode != 0:
                        failed = 1
                        print(done.stdout, done.stderr)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    sys.exit(run(parser.parse_args().examples))


if __name__ == "__main__":
    main()
