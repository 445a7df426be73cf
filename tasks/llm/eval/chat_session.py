"""A multi-turn conversation with a checkpoint, streamed piece by piece (for `seedflow llm chat`)."""

from __future__ import annotations

from collections.abc import Iterator

from tasks.llm.data.chat_format import render_for_completion
from tasks.llm.eval.engine import Engine


class ChatSession:
    def __init__(self, model, tokenizer, checkpoint: str = "", temperature: float = 0.6, top_k: int | None = 50,
                 max_tokens: int = 256, seed: int = 0):
        self.engine, self.tokenizer, self.checkpoint = Engine(model, tokenizer), tokenizer, checkpoint
        self.temperature, self.top_k, self.max_tokens, self.seed = temperature, top_k, max_tokens, seed
        self.messages: list[dict] = []

    @classmethod
    def from_checkpoint(cls, checkpoint: str, **kwargs) -> ChatSession:
        from tasks.llm.eval.stage import load_for_inference

        model, tokenizer, _ = load_for_inference(checkpoint)
        return cls(model, tokenizer, checkpoint, **kwargs)

    def clear(self) -> None:
        self.messages = []

    def reply(self, text: str) -> Iterator[str]:
        """Yield the reply's text as it is generated; the turn is kept for the next question."""
        self.messages.append({"role": "user", "content": text})
        prompt = render_for_completion(self.tokenizer, {"messages": self.messages})
        ids: list[int] = []
        shown = ""
        self.seed += 1
        for column, _ in self.engine.generate(prompt, max_tokens=self.max_tokens, temperature=self.temperature,
                                              top_k=self.top_k, seed=self.seed):
            if column[0] in self.engine.stop:
                break
            ids.append(column[0])
            text_so_far = self.tokenizer.decode(ids)
            if not text_so_far.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                yield text_so_far[len(shown):]
                shown = text_so_far
        self.messages.append({"role": "assistant", "content": self.tokenizer.decode(ids)})
