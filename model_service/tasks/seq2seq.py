"""Summaries and translations: a seq2seq model's engine, and the prompts either route writes.

**The engine** (``Seq2SeqEngine``, the engine interface of ``engines.base``) runs an
``AutoModelForSeq2SeqLM``: a row's text goes through the encoder once, then the decoder writes
one token a step, sampled per row (``sampling.pick_tokens``) and streamed like ``/generate``'s.
Requests that join in the same step form a cohort: their encoder outputs are right-padded
together and their decoders share each step's forward (all at the same length, so no decoder
padding). Cohorts that joined at different times step one after the other within a step; a row
that ends leaves its cohort's cache (``batch_select_indices``).

**The prompts**: a seq2seq model gets its own task prefix where its config lists one (T5's
``task_specific_params``: "summarize: ", "translate English to German: "); the causal fallback
asks the instruct model through its chat template (the instruction after the text, so a text
cut to fit would lose its start, never the instruction), or, with no template, writes the
classic prompts ("TL;DR:").

Blocking; on the executor.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import PretrainedConfig
from transformers.modeling_outputs import BaseModelOutput

from model_service.batching import Row, eos_ids, pad_rows
from model_service.errors import ModelUnavailableError, ValidationError
from model_service.fill_mask import FillBatch, FillTask
from model_service.generation import PreparedPrompt
from model_service.loading import LoadedModel, ModelRegistry
from model_service.output import StopFilter, TextDecoder
from model_service.sampling import pick_tokens
from model_service.types import FinishReason, GenerationRequest, Mode, RewriteRequest

DEFAULT_TARGET = "French"  # transformers' classic translation demo is English to French

SUMMARIZE_ASK = "{text}\n\nSummarize the text above in two or three sentences."
TRANSLATE_ASK = "{text}\n\nTranslate the text above into {to}. Write only the translation."
SUMMARIZE_PLAIN = "{text}\nTL;DR:"  # GPT-2's zero-shot summary prompt
TRANSLATE_PLAIN = "{text}\n\nThe same text in {to}:"

_TARGET = re.compile(r" to ([A-Za-z][A-Za-z -]*?):\s*$")


# -- prompts ------------------------------------------------------------------------------------


def targets(config: PretrainedConfig) -> dict[str, tuple[str, str]]:
    """The languages a checkpoint's config lists: ``{name or code, casefolded: (name, prefix)}``."""
    found: dict[str, tuple[str, str]] = {}
    for key, params in (getattr(config, "task_specific_params", None) or {}).items():
        if not key.startswith("translation") or not isinstance(params, dict):
            continue
        prefix = str(params.get("prefix", ""))
        code = key.rsplit("_to_", 1)[-1] if "_to_" in key else ""
        match = _TARGET.search(prefix)
        name = match.group(1) if match else code
        if name:
            found[name.casefold()] = (name, prefix)
            if code:
                found.setdefault(code.casefold(), (name, prefix))
    return found


def native_prompt(name: str, config: PretrainedConfig, request: RewriteRequest) -> tuple[str, str | None]:
    """``(the seq2seq model's input, the language it translates into where known)``."""
    params = getattr(config, "task_specific_params", None) or {}
    if request.kind == "summarize":
        prefix = str((params.get("summarization") or {}).get("prefix", ""))
        return prefix + request.text, None
    listed = targets(config)
    if not listed:
        if request.to is not None:
            raise ValidationError(
                f"`to` can't be chosen on model `{name}`: it translates into one fixed language; "
                "leave `to` empty (or pick a model that lists its languages)"
            )
        return request.text, None
    wanted = (request.to or DEFAULT_TARGET).casefold()
    if wanted not in listed:
        if request.to is None:
            wanted = next(iter(listed))
        else:
            names = sorted({language for language, _ in listed.values()})
            raise ValidationError(
                f"`to` must be one of {', '.join(names)} for model `{name}`, got {request.to!r}"
            )
    language, prefix = listed[wanted]
    return prefix + request.text, language


def causal_prompt(request: RewriteRequest, *, chat: bool) -> tuple[str, Mode, str | None]:
    """``(prompt, mode, target language)`` for the instruct model (``chat``) or a plain causal LM."""
    to = request.to or DEFAULT_TARGET
    if request.kind == "summarize":
        template = SUMMARIZE_ASK if chat else SUMMARIZE_PLAIN
        return template.format(text=request.text), ("chat" if chat else "completion"), None
    template = TRANSLATE_ASK if chat else TRANSLATE_PLAIN
    return template.format(text=request.text, to=to), ("chat" if chat else "completion"), to


# -- the engine -----------------------------------------------------------------------------------


def _cache_arg(model: torch.nn.Module) -> str:
    # transformers renamed `past_key_values` to `cache` during 5.x; take whichever this one has.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _decoder_start(loaded: LoadedModel) -> int:
    for source in (loaded.model.generation_config, loaded.model.config):
        start = getattr(source, "decoder_start_token_id", None)
        if start is not None:
            return int(start)
    return int(loaded.tokenizer.pad_token_id or 0)


class Cohort:
    """Rows that joined together: one encoder pass, then one decoder forward a step for all."""

    def __init__(self, loaded: LoadedModel, rows: list[Row]) -> None:
        self.loaded = loaded
        self.rows = rows
        model, device = loaded.model, loaded.device
        pad = loaded.tokenizer.pad_token_id or 0
        ids, mask = pad_rows([r.prompt.input_ids for r in rows], pad, left=False)
        self._mask = mask.to(device)
        self._encoded = BaseModelOutput(
            last_hidden_state=model.get_encoder()(
                input_ids=ids.to(device), attention_mask=self._mask
            ).last_hidden_state
        )
        self._cache: Any = None
        self._arg = _cache_arg(model)
        self._pad = pad
        self._forced = getattr(model.generation_config, "forced_bos_token_id", None)
        self._eos = eos_ids(loaded)
        self._next = torch.full((len(rows), 1), _decoder_start(loaded), dtype=torch.long)
        self.step()

    def step(self) -> None:
        model = self.loaded.model
        extra = {self._arg: self._cache} if self._cache is not None else {}
        out = model(
            encoder_outputs=self._encoded,
            attention_mask=self._mask,
            decoder_input_ids=self._next.to(self.loaded.device),
            use_cache=True,
            **extra,
        )
        self._cache = getattr(out, "cache", None) or out.past_key_values
        logits = out.logits[:, -1, :].float()
        if self._pad not in self._eos:
            logits[:, self._pad] = float("-inf")  # padding is never part of a text
        picks = pick_tokens(logits, self.rows)
        for i, (row, token) in enumerate(zip(self.rows, picks, strict=True)):
            if row.generated == 0 and self._forced is not None:
                token = int(self._forced)  # mBART/NLLB: the target language's token comes first
            self._next[i, 0] = token
            _accept(row, token, self._eos)

    def retire(self) -> list[Row]:
        """Drop the rows that ended; returns them."""
        done = [row for row in self.rows if row.finish_reason is not None]
        if not done:
            return []
        keep = [i for i, row in enumerate(self.rows) if row.finish_reason is None]
        self.rows = [self.rows[i] for i in keep]
        if keep:
            index = torch.tensor(keep)
            device_index = index.to(self.loaded.device)
            self._cache.batch_select_indices(device_index)
            hidden = self._encoded.last_hidden_state
            assert hidden is not None  # the encoder's output, kept since the rows joined
            self._encoded = BaseModelOutput(last_hidden_state=hidden[device_index])
            self._mask = self._mask[device_index]
            self._next = self._next[index]
        return done


def _accept(row: Row, token: int, eos: frozenset[int]) -> None:
    row.ids.append(token)
    row.generated += 1
    now = time.monotonic()
    if token not in eos:
        _emit(row, row.stops.feed(row.decoder.push(token)), now)
    if row.stops.stopped:
        row.finish_reason = "stop"
    elif token in eos:
        row.finish_reason = "eos"
    elif row.generated >= row.max_new_tokens:
        row.finish_reason = "length"
    else:
        row.finish_reason = row.should_stop()
    if row.finish_reason is not None:
        _emit(row, row.stops.feed(row.decoder.flush()) + row.stops.flush(), now)


def _emit(row: Row, text: str, now: float) -> None:
    if text:
        row.first_text_at = row.first_text_at or now
        row.pending_text.append(text)
        row.text_parts.append(text)


class Seq2SeqEngine:
    """One seq2seq catalog model (``engines.base.Engine``): rows in cohorts, a token a step each."""

    def __init__(self, registry: ModelRegistry, model: str) -> None:
        self._registry = registry
        self._model = model
        self._cohorts: list[Cohort] = []

    def load(self) -> LoadedModel:
        return self._registry.get_head(self._model, "seq2seq")

    def join(self, request: GenerationRequest, should_stop: Callable[[], FinishReason | None]) -> Row:
        loaded = self.load()
        ids = loaded.tokenizer(request.prompt, add_special_tokens=True)["input_ids"]
        truncated = len(ids) > loaded.context_length  # the service refuses these; cut, should one come
        ids = ids[: loaded.context_length]
        generator = torch.Generator(device="cpu")
        generator.manual_seed(
            request.params.seed if request.params.seed is not None else int(torch.seed()) % 2**63
        )
        return Row(
            prompt=PreparedPrompt(ids, truncated),
            params=request.params,
            should_stop=should_stop,
            max_new_tokens=min(request.params.max_new_tokens, loaded.context_length),
            decoder=TextDecoder(loaded.tokenizer),
            stops=StopFilter(request.params.stop),
            generator=generator,
            eos_ids=eos_ids(loaded),
            ids=[],
        )

    def step(self, joining: Sequence[Row]) -> list[Row]:
        loaded = self.load()
        with loaded.lock, torch.inference_mode():
            for cohort in self._cohorts:
                cohort.step()
            if joining:
                self._cohorts.append(Cohort(loaded, list(joining)))
        done = [row for cohort in self._cohorts for row in cohort.retire()]
        self._cohorts = [cohort for cohort in self._cohorts if cohort.rows]
        return done

    def release(self) -> None:
        self._cohorts = []

    def close(self) -> None:
        self.release()

    def fill(self, tasks: Sequence[FillTask]) -> FillBatch:
        raise ModelUnavailableError(
            f"model `{self._model}` is a sequence-to-sequence model: it summarizes and translates, "
            "it can't fill masks"
        )
