"""Conversations -> token ids plus a loss mask, in nanochat's chat format.

    <|bos|> <|user_start|> question <|user_end|> <|assistant_start|> answer <|assistant_end|> ...

The mask is 1 on what the model must learn to produce: the assistant's text, its tool calls
(`<|python_start|>expr<|python_end|>`) and `<|assistant_end|>`. Everything the model is given
is 0: BOS, the user's turns, `<|assistant_start|>` and the tool's output block
(`<|output_start|>result<|output_end|>`, which the engine forces at inference time).

A conversation is {"messages": [{"role": "user" | "assistant", "content": str | [parts]}]},
parts being {"type": "text" | "python" | "python_output", "text": str}. An optional first
"system" message is folded into the first user message, as nanochat does.
"""

from __future__ import annotations

from typing import Any

from tasks.common.errors import InputError
from tasks.llm.data.tokenizer import Tokenizer

PART_TYPES = ("text", "python", "python_output")


class ChatFormatError(InputError):
    """A conversation that does not follow the chat format."""


def _messages(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(conversation, dict) or not isinstance(conversation.get("messages"), list):
        raise ChatFormatError("a conversation is a dict with a 'messages' list")
    messages = [dict(m) for m in conversation["messages"]]
    if messages and messages[0].get("role") == "system":
        if len(messages) < 2 or messages[1].get("role") != "user":
            raise ChatFormatError("a system message must be followed by a user message")
        messages[1]["content"] = f"{messages[0]['content']}\n\n{messages[1]['content']}"
        messages = messages[1:]
    if not messages:
        raise ChatFormatError("conversation has no messages")
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if message.get("role") != expected:
            raise ChatFormatError(f"message {i} has role {message.get('role')!r}, expected {expected!r} "
                                  "(turns alternate user, assistant, ...)")
        content = message.get("content")
        if expected == "user" and not isinstance(content, str):
            raise ChatFormatError(f"message {i}: user content must be a string")
        if not isinstance(content, (str, list)):
            raise ChatFormatError(f"message {i}: content must be a string or a list of parts")
    return messages


def _assistant_parts(content: str | list, index: int) -> list[tuple[str, str]]:
    if isinstance(content, str):
        return [("text", content)]
    parts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES or not isinstance(part.get("text"), str):
            raise ChatFormatError(f"message {index}: part {part!r} must be {{'type': one of {PART_TYPES}, 'text': str}}")
        parts.append((part["type"], part["text"]))
    return parts


def render_conversation(tokenizer: Tokenizer, conversation: dict[str, Any],
                        max_tokens: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids and the training mask (1 = learn this token), both truncated to `max_tokens`."""
    t = tokenizer.token_id
    ids: list[int] = []
    mask: list[int] = []

    def add(tokens: int | list[int], learn: int) -> None:
        tokens = [tokens] if isinstance(tokens, int) else tokens
        ids.extend(tokens)
        mask.extend([learn] * len(tokens))

    add(tokenizer.bos_id, 0)
    for i, message in enumerate(_messages(conversation)):
        if message["role"] == "user":
            add(t("<|user_start|>"), 0)
            add(tokenizer.encode(message["content"]), 0)
            add(t("<|user_end|>"), 0)
            continue
        add(t("<|assistant_start|>"), 0)
        for kind, text in _assistant_parts(message["content"], i):
            if kind == "text":
                add(tokenizer.encode(text), 1)
            elif kind == "python":
                add([t("<|python_start|>"), *tokenizer.encode(text), t("<|python_end|>")], 1)
            else:  # the tool's output is given, not learned
                add([t("<|output_start|>"), *tokenizer.encode(text), t("<|output_end|>")], 0)
        add(t("<|assistant_end|>"), 1)
    if max_tokens is not None:
        ids, mask = ids[:max_tokens], mask[:max_tokens]
    return ids, mask


def render_for_completion(tokenizer: Tokenizer, conversation: dict[str, Any]) -> list[int]:
    """The prompt for generation: the conversation up to the last user turn, then `<|assistant_start|>`.

    A final assistant message (the reference answer of a task) is dropped first.
    """
    messages = _messages(conversation)
    if messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    ids, _ = render_conversation(tokenizer, {"messages": messages})
    return ids + [tokenizer.token_id("<|assistant_start|>")]


def visualize(tokenizer: Tokenizer, ids: list[int], mask: list[int]) -> str:
    """The rendering with each run of not-trained tokens in [brackets]: a quick human check."""
    out, start = [], 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or mask[end] != mask[start]:
            text = tokenizer.decode(ids[start:end])
            out.append(text if mask[start] else f"[{text}]")
            start = end
    return "".join(out)
