"""An independent re-statement of the upstream script's behaviour (shared/UPSTREAM_BEHAVIOUR.md),
used only as the oracle of the fidelity tests: what upstream sends each model and writes to its log,
for a given template, participants and model replies."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# alias -> (display name, company), from upstream's MODEL_INFO
SEED = {
    "opus": ("Claude", "anthropic"),
    "sonnet": ("Claude", "anthropic"),
    "gpt4o": ("GPT4o", "openai"),
    "o1-preview": ("O1", "openai"),
    "o1-mini": ("Mini", "openai"),
    "cli": ("CLI", "CLI"),
}


@dataclass
class UpstreamRun:
    requests: list[tuple[str, str | None, list[dict[str, str]]]] = field(default_factory=list)
    log: str = ""


def run(
    template: Path, aliases: Sequence[str], replies: Iterator[str], max_turns: int
) -> UpstreamRun:
    configs: list[dict[str, Any]] = [
        json.loads(line)
        for line in template.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    actors = ["CLI" if a == "cli" else f"{SEED[a][0]} {i + 1}" for i, a in enumerate(aliases)]
    fmt = {}
    for j, alias in enumerate(aliases, start=1):
        fmt[f"lm{j}_company"] = SEED[alias][1]
        fmt[f"lm{j}_actor"] = actors[j - 1]
    systems: list[str | None] = []
    contexts: list[list[dict[str, str]]] = []
    for i, alias in enumerate(aliases):
        if alias == "cli":
            systems.append(None)
            contexts.append([])
            continue
        system = configs[i]["system_prompt"].format(**fmt)
        context = [
            {"role": m["role"], "content": m["content"].format(**fmt)}
            for m in configs[i]["context"]
        ]
        if SEED[alias][1] == "openai" and system:
            for m in context:
                if m["role"] == "user":
                    m["content"] = f"<SYSTEM>{system}</SYSTEM>\n\n{m['content']}"
                    break
            else:
                context.append({"role": "user", "content": f"<SYSTEM>{system}</SYSTEM>"})
            system = ""
        systems.append(system or None)
        contexts.append(context)

    out = UpstreamRun()
    for _ in range(max_turns):
        for i, alias in enumerate(aliases):
            if alias == "cli":
                sent = [{"role": "user", "content": contexts[i][-1]["content"]}]
            else:
                sent = [dict(m) for m in contexts[i]]
            out.requests.append((alias, systems[i], sent))
            reply = next(replies)
            out.log += f"\n### {actors[i]} ###\n{reply}\n"
            if "^C^C" in reply:
                out.log += f"\n{actors[i]} has ended the conversation with ^C^C.\n"
                return out
            for j in range(len(aliases)):
                contexts[j].append({"role": "assistant" if j == i else "user", "content": reply})
    out.log += f"\nReached maximum number of turns ({max_turns}). Conversation ended.\n"
    return out
