"""Mask-filling: a masked LM when one is configured, else a causal LM that proposes and rescores.

The causal path: propose candidate words for the blank (from a few-shot "fill in the blank"
prompt and from the left context, in one batch), then rank each whole filled sentence by
the model's likelihood, also batched. Ranking whole sentences lets the words after the
blank vote, which the naive "next token after the left context" cannot do.
"""

from __future__ import annotations

import math

import torch

from model_service.errors import ValidationError
from model_service.loading import LoadedModel
from model_service.types import FillPrediction, MaskedText, split_mask

FEW_SHOT = (
    "Fill in the blank with one word.\n"
    "Sentence: The cat sat on the ___.\nAnswer: mat\n"
    "Sentence: ___ is the largest planet.\nAnswer: Jupiter\n"
    "Sentence: {sentence}\nAnswer:"
)
PROPOSALS_PER_PROMPT = 40
RESCORE_CHUNK = 32


def _with_leading_space(masked: MaskedText, word: str) -> tuple[str, str]:
    """Where the word goes: ``(token, sentence)``; a word after a space carries the space."""
    if masked.left[-1:].isspace():
        token = " " + word
        return token, masked.left.rstrip() + token + masked.right
    return word, masked.left + word + masked.right


# -- masked LM -------------------------------------------------------------------------------


def check_length(loaded: LoadedModel, text: str, overhead: int = 0) -> None:
    """Refuse a text the model can't see whole (the mask's context matters on both sides)."""
    tokens = len(loaded.tokenizer(text, add_special_tokens=True)["input_ids"])
    limit = loaded.context_length - overhead
    if tokens > limit:
        raise ValidationError(
            f"`text` is too long for model `{loaded.name}`: {tokens} tokens, at most {limit}"
        )


def _shown_piece(loaded: LoadedModel, token_id: int, inside_word: bool) -> str | None:
    """The word a vocabulary entry stands for, or None for pieces a person would not accept."""
    tok = loaded.tokenizer
    if token_id in tok.all_special_ids:
        return None
    piece = tok.convert_ids_to_tokens(token_id)
    if piece.startswith("##"):
        # A word-piece continues the word before it: right only when the mask is inside a word.
        return piece[2:] if inside_word else None
    text = tok.decode([token_id]).strip()
    return text or None


def fill_masked_lm(loaded: LoadedModel, text: str, top_k: int) -> list[FillPrediction]:
    tok = loaded.tokenizer
    masked = split_mask(text, tok.mask_token)
    check_length(loaded, text)
    enc = tok(masked.left + tok.mask_token + masked.right, return_tensors="pt").to(loaded.device)
    with loaded.lock, torch.inference_mode():
        logits = loaded.model(**enc).logits
    position = (enc["input_ids"][0] == tok.mask_token_id).nonzero(as_tuple=True)[0][0]
    probs = logits[0, position].float().softmax(-1)
    inside_word = masked.left[-1:].isalnum()
    out: list[FillPrediction] = []
    top = probs.topk(min(len(probs), top_k * 4 + len(tok.all_special_ids)))
    for score, token_id in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        token = _shown_piece(loaded, token_id, inside_word)
        if token is not None and len(out) < top_k:
            out.append(FillPrediction(token=token, score=score, sequence=masked.left + token + masked.right))
    return out


# -- causal LM: propose, then rescore ---------------------------------------------------------


def _is_word(text: str) -> bool:
    stripped = text.strip()
    return (
        bool(stripped)
        and any(c.isalnum() for c in stripped)
        and all(c.isalnum() or c in "'-" for c in stripped)
    )


def _next_token_logprobs(loaded: LoadedModel, prompts: list[str]) -> torch.Tensor:
    tok = loaded.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True).to(loaded.device)
    logits = loaded.model(**enc).logits[:, -1, :]
    return logits.float().log_softmax(-1)


def propose(loaded: LoadedModel, masked: MaskedText) -> list[str]:
    """Candidate words for the blank, best guesses first, no duplicates."""
    sentence = f"{masked.left}___{masked.right}"
    prompts = [FEW_SHOT.format(sentence=sentence)]
    if masked.left.strip():
        prompts.append(masked.left.rstrip())
    logprobs = _next_token_logprobs(loaded, prompts)
    words: dict[str, None] = {}
    for row in logprobs:
        for token_id in row.topk(PROPOSALS_PER_PROMPT).indices.tolist():
            piece = loaded.tokenizer.decode([token_id])
            if _is_word(piece):
                words.setdefault(piece.strip(), None)
    return list(words)


def _sentence_logprobs(loaded: LoadedModel, sentences: list[str]) -> list[float]:
    """Total log-likelihood of each sentence, after a newline that stands for 'start of text'."""
    tok = loaded.tokenizer
    tok.padding_side = "right"
    prefix = len(tok("\n", add_special_tokens=False)["input_ids"])
    totals: list[float] = []
    for start in range(0, len(sentences), RESCORE_CHUNK):
        chunk = ["\n" + s for s in sentences[start : start + RESCORE_CHUNK]]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(loaded.device)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        logits = loaded.model(input_ids=ids, attention_mask=mask).logits.float()
        token_lp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        weights = mask[:, 1:].clone()
        weights[:, : prefix - 1] = 0  # the first scored token is the sentence's first token
        totals.extend((token_lp * weights).sum(-1).tolist())
    return totals


def fill_causal(loaded: LoadedModel, text: str, top_k: int) -> list[FillPrediction]:
    masked = split_mask(text, None)
    check_length(loaded, FEW_SHOT.format(sentence=text))
    with loaded.lock, torch.inference_mode():
        words = propose(loaded, masked)
        if not words:
            return []
        placed = [_with_leading_space(masked, w) for w in words]
        totals = _sentence_logprobs(loaded, [sentence for _, sentence in placed])
    # Scores are probabilities among the candidates, so they add up and compare at a glance.
    best = max(totals)
    weights = [math.exp(t - best) for t in totals]
    norm = sum(weights)
    ranked = sorted(zip(weights, placed, strict=True), key=lambda item: item[0], reverse=True)
    return [FillPrediction(token=t, score=w / norm, sequence=s) for w, (t, s) in ranked[:top_k]]


def fill(loaded: LoadedModel, text: str, top_k: int) -> list[FillPrediction]:
    if loaded.head == "masked":
        return fill_masked_lm(loaded, text, top_k)
    return fill_causal(loaded, text, top_k)
