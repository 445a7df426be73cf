"""Synthetic tasks the project generates: small, exact, learnable by a tiny GPT on a CPU.

Every example is a pure function of (seed, split, index), so train and test sets are
reproducible without files, and train and test use different streams of examples. Answers are
short and graded exactly, so scores well above chance show that a model learned something.
"""

from __future__ import annotations

import random
import re

from tasks.llm.data.datasets.base import Conversation, Task

WORDS = list(dict.fromkeys("""
apple house river green water light night music paper money story table friend garden window
mother father sister brother school family summer winter spring autumn flower forest market
bread butter cheese honey orange lemon cherry banana tomato potato carrot pepper salt sugar
horse mouse tiger eagle rabbit monkey turtle spider kitten puppy dragon castle island bridge
ocean mountain valley desert planet silver golden purple yellow circle square pencil basket
bottle candle mirror pillow ladder rocket engine button ribbon jacket wallet letter number
question answer people doctor farmer singer writer teacher captain sailor soldier prince
queen king knight wizard giant shadow thunder storm rainbow sunset cloud breeze stone metal
wooden simple happy quiet gentle clever brave strong little young ancient modern bright
dark heavy empty hungry thirsty sleepy angry lucky funny strange secret hidden frozen broken
travel listen wonder follow borrow gather answer remember forget imagine believe promise
strawberry chocolate elephant butterfly umbrella computer keyboard calendar adventure
""".split()))

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


class SyntheticTask(Task):
    """Base: `size` examples, each drawn from its own seeded random stream."""

    def __init__(self, split: str = "train", size: int = 10_000, seed: int = 0):
        if split not in SPLIT_SEEDS:
            raise ValueError(f"split must be one of {list(SPLIT_SEEDS)}, got {split!r}")
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.split, self.size, self.seed = split, size, seed

    def __len__(self) -> int:
        return self.size

    def rng(self, index: int) -> random.Random:
        return random.Random(f"{self.name}/{self.seed}/{SPLIT_SEEDS[self.split]}/{index}")

    def example(self, index: int) -> Conversation:
        question, answer, parts = self.make(self.rng(index))
        return {"messages": [{"role": "user", "content": question},
                             {"role": "assistant", "content": parts or answer}], "answer": answer}

    def make(self, rng: random.Random) -> tuple[str, str, list | None]:
        """(question, expected answer, assistant parts or None for a plain text reply)."""
        raise NotImplementedError


def last_integer(text: str) -> str | None:
    found = re.findall(r"-?\d+", text)
    return found[-1] if found else None


def spelled(text: str) -> str:
    """Letters only, lower case: 'A p-p l e' -> 'apple'."""
    return "".join(ch for ch in text.lower() if ch.isalpha())


class Addition(SyntheticTask):
    """"What is 48 + 715?" -> "763"; with `tool=True` the sum goes through the calculator."""

    name = "addition"

    def __init__(self, split: str = "train", size: int = 10_000, seed: int = 0, min_digits: int = 1,
                 max_digits: int = 3, tool: bool = False):
        super().__init__(split, size, seed)
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
        self.min_digits, self.max_digits, self.tool = min_digits, max_digits, tool

    def _number(self, rng: random.Random) -> int:
        digits = rng.randint(self.min_digits, self.max_digits)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)

    def make(self, rng):
        a, b = self._number(rng), self._number(rng)
        answer = str(a + b)
        parts = None
        if self.tool:
            parts = [{"type": "python", "text": f"{a}+{b}"}, {"type": "python_output", "text": answer},
                     {"type": "text", "text": answer}]
        return f"What is {a} + {b}?", answer, parts

    def evaluate(self, conversation, completion):
        return last_integer(completion) == conversation["answer"]


class WordTask(SyntheticTask):
    """Base of the letter tasks: words drawn from the first `words` of WORDS (0 = all of them).

    Fewer words means more repetitions of each, so a smaller model learns them sooner.
    """

    def __init__(self, split: str = "train", size: int = 10_000, seed: int = 0, words: int = 0):
        super().__init__(split, size, seed)
        if not 0 <= words <= len(WORDS):
            raise ValueError(f"words must be in 0..{len(WORDS)}, got {words}")
        self.words = WORDS[:words] if words else WORDS


class Spelling(WordTask):
    """"Spell the word: apple" -> "a p p l e"."""

    name = "spelling"

    def make(self, rng):
        word = rng.choice(self.words)
        return f"Spell the word: {word}", " ".join(word), None

    def evaluate(self, conversation, completion):
        return spelled(completion) == spelled(conversation["answer"])


class Reverse(WordTask):
    """"Reverse the letters of: apple" -> "e l p p a" (letters spaced, so each is a token)."""

    name = "reverse"

    def make(self, rng):
        word = rng.choice(self.words)
        return f"Reverse the letters of: {word}", " ".join(reversed(word)), None

    def evaluate(self, conversation, completion):
        return spelled(completion) == spelled(conversation["answer"])


class Counting(WordTask):
    """"How many times does the letter r appear in strawberry?" -> "s t r a w b e r r y -> 3".

    The answer spells the word first (a chain of thought a small model can follow).
    """

    name = "counting"

    def make(self, rng):
        word = rng.choice(self.words)
        letter = rng.choice(word) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
        count = str(word.count(letter))
        return (f"How many times does the letter {letter} appear in {word}?",
                f"{' '.join(word)} -> {count}", None)

    def evaluate(self, conversation, completion):
        return last_integer(completion) == last_integer(conversation["answer"])
