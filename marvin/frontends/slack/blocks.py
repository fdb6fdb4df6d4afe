"""Block Kit for a ``Reply``: the core gives text, sections and a note; Slack shows them as
section and context blocks, with the execution id as a context line."""

from __future__ import annotations

from typing import Any

from marvin.core.model import Reply

__all__ = ["blocks_for", "MAX_BLOCKS"]

MAX_BLOCKS = 50  # Slack's limit for one message


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def blocks_for(reply: Reply) -> list[dict[str, Any]] | None:
    """The blocks to post, or None for plain text. Past Slack's 50 blocks the text (split into
    several messages) carries everything rather than a silently shortened list."""
    if reply.blocks:
        blocks = list(reply.blocks)
    elif reply.sections:
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in reply.sections
        ]
        if reply.note:
            blocks.append(_context(reply.note))
    else:
        return None
    if reply.actions:  # buttons (approval requests); presses come back as marvin_<name>
        buttons = _buttons(reply)
        blocks.append({"type": "actions", "block_id": "marvin_actions", "elements": buttons})
    if reply.execution_id:
        blocks.append(_context(f"`{reply.execution_id}`"))
    return blocks if len(blocks) <= MAX_BLOCKS else None


def _buttons(reply: Reply) -> list[dict[str, Any]]:
    out = []
    for action in reply.actions:
        button: dict[str, Any] = {
            "type": "button",
            "text": {"type": "plain_text", "text": action.label},
            "action_id": f"marvin_{action.name}",
            "value": action.value,
        }
        if action.style:
            button["style"] = action.style
        out.append(button)
    return out
