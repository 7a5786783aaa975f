"""The agent configuration the module outputs must be a config the agent accepts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import hcl2

from audit_archiver._cli.agent import agent

OUTPUTS = Path(__file__).parents[2] / "terraform" / "modules" / "archive-bucket" / "outputs.tf"


def test_agent_config_snippet_uses_only_agent_settings() -> None:
    with OUTPUTS.open() as handle:
        outputs = {
            name.strip('"'): body
            for block in hcl2.load(handle)["output"]
            for name, body in block.items()
        }
    heredoc = outputs["agent_config_toml"]["value"]
    snippet = heredoc.split("\n", 1)[1].rsplit("\n", 1)[0]
    filled = re.sub(r"\$\{[^}]*\}", "1", snippet)
    settings = tomllib.loads(filled.replace('"1"', '"x"'))
    known = {p.name for p in agent.params if p.name}
    assert set(settings) <= known
    assert {"bucket", "prefix", "retention_days"} <= set(settings)
