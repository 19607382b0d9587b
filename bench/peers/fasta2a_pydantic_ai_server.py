"""examples/pydantic_ai_agent.py's agent served through FastA2A (fasta2a 2.1, pydantic-ai
2.78), the way pydantic-ai's users serve one over A2A, for bench/llm.py: how many tokens
does the model server generate after the cancel?

    bench/.venvs/fasta2a/bin/python bench/peers/fasta2a_pydantic_ai_server.py --port 8001

`fasta2a.pydantic_ai.agent_to_a2a(agent)` is the replacement pydantic-ai 2 points to for
its removed `Agent.to_a2a()`; the agent is the example's (an `OpenAIChatModel` on an
OpenAI-compatible server from OPENAI_BASE_URL, OPENAI_API_KEY; ANDON_LLM_MODEL names the
model). Served by uvicorn on 127.0.0.1; JSON-RPC at `/` (A2A 0.3 methods:
`message/send`, `tasks/get`, `tasks/cancel`).
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fasta2a.pydantic_ai import agent_to_a2a
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

HOST = "127.0.0.1"
model = OpenAIChatModel(
    os.environ.get("ANDON_LLM_MODEL", "gpt-4o-mini"),
    provider=OpenAIProvider(
        base_url=os.environ.get("OPENAI_BASE_URL"), api_key=os.environ.get("OPENAI_API_KEY")
    ),
)
assistant = Agent(model, instructions="Answer the user.", name="pydantic-ai agent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8001")))
    args = parser.parse_args()
    app = agent_to_a2a(assistant, url=f"http://{HOST}:{args.port}")
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
