"""Byte-level BPE tokenizer with the chat special tokens (HF `tokenizers`, as nanochat).

Text is pre-split with the GPT-4 pattern (so merges never cross word / number / whitespace
boundaries), then byte-level BPE runs on the pieces: every string round-trips exactly. The
special tokens are reserved at ids 0..8 and are only produced by `token_id`, never by `encode`:
a user who types "<|bos|>" gets ordinary text tokens, so chat structure cannot be forged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from tasks.common.atomic import write_text
from tasks.common.errors import InputError

SPECIAL_TOKENS = [
    "<|bos|>",  # every document starts with it
    "<|user_start|>", "<|user_end|>",
    "<|assistant_start|>", "<|assistant_end|>",
    "<|python_start|>", "<|python_end|>",  # assistant calls the calculator / python tool
    "<|output_start|>", "<|output_end|>",  # the tool's answer, forced by the engine
]

# GPT-4 (cl100k) split pattern; `digits` sets the longest run of digits kept in one piece.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,DIGITS}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


class TokenizerError(InputError):
    """A tokenizer that cannot be trained, loaded or asked for an unknown special token."""


def split_pattern(digits: int = 3) -> str:
    if digits < 1:
        raise TokenizerError(f"digits per piece must be >= 1, got {digits}")
    return GPT4_PATTERN.replace("DIGITS", str(digits))


class Tokenizer:
    def __init__(self, hf: HFTokenizer):
        missing = [s for s in SPECIAL_TOKENS if hf.token_to_id(s) is None]
        if missing:
            raise TokenizerError(f"tokenizer lacks the special tokens {missing}")
        hf.encode_special_tokens = True  # special tokens in plain text are just text
        self._hf = hf
        self._special = {s: hf.token_to_id(s) for s in SPECIAL_TOKENS}

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, digits: int = 3) -> Tokenizer:
        """Learn `vocab_size - 256 - len(SPECIAL_TOKENS)` merges on `texts`."""
        min_size = 256 + len(SPECIAL_TOKENS)
        if vocab_size < min_size:
            raise TokenizerError(f"vocab_size {vocab_size} is below the {min_size} byte + special tokens")
        hf = HFTokenizer(models.BPE(byte_fallback=False, unk_token=None, fuse_unk=False))
        hf.normalizer = None
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(pattern=Regex(split_pattern(digits)), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        hf.decoder = decoders.ByteLevel()
        hf.post_processor = None
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=0, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=SPECIAL_TOKENS,
        )
        seen = _CountingIterator(texts)
        hf.train_from_iterator(seen, trainer)
        if seen.chars == 0:
            raise TokenizerError("cannot train a tokenizer on an empty corpus (no characters)")
        return cls(hf)

    def __getstate__(self) -> str:  # pickling (Ray) keeps the no-forged-specials setting
        return self._hf.to_str()

    def __setstate__(self, state: str) -> None:
        self.__init__(HFTokenizer.from_str(state))

    def save(self, path: str | Path) -> Path:
        """One JSON file (vocabulary, merges, split pattern, special tokens), written atomically."""
        return write_text(path, self._hf.to_str())

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} not found (run `seedflow llm tokenize` first)")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as exc:
            raise TokenizerError(f"{path} is not a tokenizer file: {exc}") from exc
        return cls(hf)

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Parallel over texts (Rust threads)."""
        return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._hf.decode(list(ids), skip_special_tokens=False)

    def token_id(self, special_name: str) -> int:
        try:
            return self._special[special_name]
        except KeyError:
            raise TokenizerError(f"unknown special token {special_name!r}; known: {SPECIAL_TOKENS}") from None

    def id_to_token(self, token_id: int) -> str:
        return self._hf.id_to_token(token_id)

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes each id stands for (0 for special tokens): the denominator of bits per byte."""
        special = set(self._special.values())  # byte-level: one character of a token = one byte
        return [0 if i in special else len(self._hf.id_to_token(i)) for i in range(self.vocab_size)]

    @property
    def bos_id(self) -> int:
        return self._special["<|bos|>"]

    @property
    def vocab_size(self) -> int:
        return self._hf.get_vocab_size()


class _CountingIterator(Iterator[str]):
    """Pass texts through to the trainer while counting characters, to catch empty corpora."""

    def __init__(self, texts: Iterable[str]):
        self._it, self.chars = iter(texts), 0

    def __next__(self) -> str:
        text = next(self._it)
        self.chars += len(text)
        return text
