"""The tokenizer view: text -> tokens, ids, attention mask and token type ids, as the seed shows them.

``tokenizer(text)`` gives ``input_ids``, ``attention_mask`` and (where the model takes them)
``token_type_ids``; this adds, for each token, what it stands for. A byte-level BPE (GPT-2,
SmolLM2) stores bytes as printable characters (``Ġ`` is a space) and may split one character
(Chinese, emoji) across tokens: those pieces are shown as their bytes, with the character they
are part of. Blocking (a tokenizer call); runs on the service's executor.
"""

from __future__ import annotations

import functools
import re

from transformers import PreTrainedTokenizerBase

from model_service.types import TokenizeResult, TokenPiece

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte fallback


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-to-printable-character map, inverted (every byte has one character)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def algorithm(tokenizer: PreTrainedTokenizerBase) -> tuple[str, bool]:
    """``(the algorithm in words, whether its pieces are bytes written as characters)``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return type(tokenizer).__name__, False
    model = type(backend.model).__name__
    byte_level = "ByteLevel" in repr(backend.pre_tokenizer) or "ByteLevel" in repr(backend.decoder)
    if byte_level:
        return f"byte-level {model}", True
    if getattr(backend.model, "byte_fallback", False):
        return f"{model} with byte fallback", False
    return model, False


def piece_bytes(piece: str, byte_level: bool) -> bytes | None:
    """The bytes a vocabulary entry stands for, where the tokenizer stores bytes; else None."""
    if byte_level:
        table = _byte_of_char()
        if all(c in table for c in piece):
            return bytes(table[c] for c in piece)
        return None
    if match := _BYTE_TOKEN.fullmatch(piece):
        return bytes([int(match.group(1), 16)])
    return None


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    pair: str | None,
    *,
    model: str,
    context_length: int,
    serving_length: int | None,
) -> TokenizeResult:
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(text, pair, add_special_tokens=True, return_offsets_mapping=fast)
    ids = list(encoded["input_ids"])
    offsets = encoded.get("offset_mapping") or [(0, 0)] * len(ids)
    sequences = encoded.sequence_ids(0) if fast else [0] * len(ids)
    special_ids = set(tokenizer.all_special_ids)
    name, byte_level = algorithm(tokenizer)
    sources = (text, pair or "")
    pieces = []
    for token_id, piece, (start, end), sequence in zip(
        ids, tokenizer.convert_ids_to_tokens(ids), offsets, sequences, strict=True
    ):
        special = sequence is None or (token_id in special_ids and start == end)
        pieces.append(_piece(token_id, piece, start, end, None if special else sequence, sources, byte_level))
    token_types = encoded.get("token_type_ids")
    return TokenizeResult(
        model=model,
        pieces=tuple(pieces),
        input_ids=tuple(ids),
        attention_mask=tuple(encoded["attention_mask"]),
        token_type_ids=tuple(token_types) if token_types is not None else None,
        context_length=context_length,
        serving_length=serving_length if serving_length and serving_length < context_length else None,
        algorithm=name,
        vocabulary=len(tokenizer),
    )


def _piece(
    token_id: int,
    piece: str,
    start: int,
    end: int,
    sequence: int | None,
    sources: tuple[str, str],
    byte_level: bool,
) -> TokenPiece:
    if sequence is None:
        return TokenPiece(token_id, piece, piece, (), True, 0, 0, None)
    covered = sources[sequence][start:end]
    raw = piece_bytes(piece, byte_level)
    if raw is None:
        # WordPiece, Unigram, an unknown token: the characters it covers say what it is.
        return TokenPiece(token_id, piece, covered or piece, (), False, start, end, sequence)
    try:
        return TokenPiece(token_id, piece, raw.decode("utf-8"), (), False, start, end, sequence)
    except UnicodeDecodeError:
        return TokenPiece(token_id, piece, "", tuple(raw), False, start, end, sequence)
