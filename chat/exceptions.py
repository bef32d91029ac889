"""Domain errors of agents and sessions."""

from __future__ import annotations

from genie.exceptions import Conflict


class AgentInUse(Conflict):
    default_code = "agent_in_use"
    default_detail = "The agent has sessions; pass ?force=true to archive it instead."
