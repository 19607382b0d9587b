"""`langgraph dev` (LangGraph's own server, in-memory runtime) serving
bench/peers/langgraph_dev_graph.py, run by bench/peers/launch.py in the langgraph-dev
environment:

    python bench/peers/langgraph_dev_server.py --port 8003

Without reload and without a browser; LangSmith tracing off (no network here). It keeps
its state (`.langgraph_api/`) and its configuration (langgraph.json, which names files
relative to the working directory) in bench/.venvs/langgraph-dev-state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
port = parser.parse_args().port
langgraph = Path(sys.executable).parent / "langgraph"
os.environ.setdefault("LANGSMITH_TRACING", "false")
state = HERE.parent / ".venvs" / "langgraph-dev-state"
state.mkdir(parents=True, exist_ok=True)
os.chdir(state)
graph = HERE / "langgraph_dev_graph.py"
config = {"dependencies": [str(HERE)], "graphs": {"agent": f"{graph}:graph"}}
Path("langgraph.json").write_text(json.dumps(config))
os.execv(
    langgraph,
    [
        str(langgraph),
        "dev",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--no-reload",
        "--config",
        "langgraph.json",
    ],
)
