"""An agent that talks to a language model and lets it run shell commands.

    OPENAI_BASE_URL=http://127.0.0.1:8900/v1 ANDON_LLM_MODEL=fake \\
        andon serve examples/llm_agent.py:agent

The model server comes from OPENAI_BASE_URL and OPENAI_API_KEY (any OpenAI-compatible
server: OpenAI, vLLM, llama.cpp, Ollama, LiteLLM), the model from ANDON_LLM_MODEL;
ANDON_LLM_DIALECT=anthropic talks to ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY instead.
The answer streams into the task's `response` artifact; the model may call one tool,
`run(command)`, whose output streams into the `output` artifact and goes back to the
model, until it answers without a tool call. Cancel the task and the model call, the
command and everything else stop; the partial answer and the usage stay with the task.
`python -m andon.testing.fake_llm` is a model server to try it with.
"""

from __future__ import annotations

import andon
from andon import llm

agent = andon.Agent(
    name="llm agent", description="Answers with a language model that can run commands"
)

RUN = llm.Tool(
    "run",
    "Run a shell command on the agent's machine and return its output and exit status.",
    {
        "type": "object",
        "properties": {"command": {"type": "string", "description": "for sh -c"}},
        "required": ["command"],
    },
)
OUTPUT_LIMIT = 20_000
"""Characters of a command's output given back to the model (its tail)."""


@agent.skill("chat", description="Answer, running shell commands when that helps")
async def chat(ctx: andon.TaskContext) -> None:
    model = llm.Model.from_env()
    messages: list[dict[str, object]] = [{"role": "user", "content": ctx.text}]
    # A retry of a task whose answer was cut goes on from where it stopped.
    prefix = await llm.partial_answer(ctx)
    while True:
        reply = await model.chat(ctx, messages, tools=[RUN], prefix=prefix)
        prefix = ""
        messages.append(reply.message)
        if not reply.tool_calls:
            return
        results = []
        for call in reply.tool_calls:
            done = await ctx.run(str(call.arguments.get("command", "")))
            results.append((call, f"exit status {done.returncode}\n{done.output[-OUTPUT_LIMIT:]}"))
        messages += model.tool_results(results)
