"""Values written as text (command-line flags, ``KEY=VALUE`` options) read back as Python values."""

from __future__ import annotations


def literal(text: str):
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True; anything else stays the string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_env_kwargs(items: list[str]) -> dict:
    """``["max_steps_in_episode=50", "layout=open"]`` -> ``{"max_steps_in_episode": 50, "layout": "open"}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--env-kwarg expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = literal(value.strip())
    return out
