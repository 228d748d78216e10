"""The environment core: ``ToolEnv``, the ``@tool`` marker, faults, outcomes and the checker's result type.

Everything here needs only gymnasium and numpy. See ``docs/adding-an-environment.md`` for how to build on it.
"""

from .env import CHARSET, MAX_OBSERVATION, SPLITS, CheckResult, ToolEnv, sanitize
from .faults import FAULT_KINDS, PER_CALL_KINDS, FaultConfig, SeededError
from .outcomes import OUTCOMES, CallResult
from .recovery import RECOVERY_KINDS
from .tools import ActionError, ToolCall, ToolError, ToolSpec, parse_action, tool, tool_schema

__all__ = [
    "CHARSET",
    "FAULT_KINDS",
    "MAX_OBSERVATION",
    "OUTCOMES",
    "PER_CALL_KINDS",
    "RECOVERY_KINDS",
    "SPLITS",
    "ActionError",
    "CallResult",
    "CheckResult",
    "FaultConfig",
    "SeededError",
    "ToolCall",
    "ToolEnv",
    "ToolError",
    "ToolSpec",
    "parse_action",
    "sanitize",
    "tool",
    "tool_schema",
]
