"""The task desk: which model serves a task here, and each task's request carried to it.

A request names the channel's model for its task, or none. Named, that model must do the task,
natively or through an honest fallback, else the reply says what it is and what the task needs.
Unnamed, the first catalog model whose kind does the task serves it; with none, a causal LM
stands in where a principled method exists (zero-shot classification, summaries and translations
asked of the instruct model); with no such method (entities, answers, similarity), the refusal
names the setting to configure and a well-known checkpoint.

Kinds are detected once at start (``detect``), from each entry's config, so ``/status`` and
``/help`` can say what is available without loading weights. Event-loop code: every model call
goes through the service's executor boundary (``run``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from model_service import checkpoint_kinds as kinds
from model_service import fetch_encoder
from model_service.api import TextStream
from model_service.config import ServiceConfig
from model_service.errors import ModelUnavailableError, ServiceError, ValidationError
from model_service.loading import Checkpoint, LoadedModel, ModelRegistry
from model_service.task_names import (
    CAUSAL_FALLBACK,
    HEAD_TASKS,
    KIND_WORDS,
    NATIVE_KIND,
    Kind,
    Task,
    missing,
    setting_key,
)
from model_service.tasks import answer, classify, entities, seq2seq, similar
from model_service.tasks.batcher import Batcher, MakeBatch
from model_service.tasks.tokenize import tokenize
from model_service.types import (
    AnswerRequest,
    AnswerResult,
    ClassifyRequest,
    ClassifyResult,
    EntitiesRequest,
    EntitiesResult,
    GenerationRequest,
    GenerationResult,
    RewriteRequest,
    SimilarRequest,
    SimilarResult,
    TaskMethod,
    TaskModels,
    TokenizeRequest,
    TokenizeResult,
)

log = logging.getLogger(__name__)

Run = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    model: str
    native: bool  # False: a causal LM's fallback


class TaskTextStream:
    """A summary's or translation's stream (``TextStream``), with where and how it is written."""

    def __init__(self, inner: TextStream, model: str, method: TaskMethod, target: str | None) -> None:
        self._inner = inner
        self.model = model
        self.method: TaskMethod = method
        self.target = target  # the language a translation is written in, where known

    @property
    def result(self) -> GenerationResult | None:
        return self._inner.result

    def __aiter__(self) -> Any:
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        await self._inner.aclose()

    def queue_place(self) -> tuple[int, float] | None:
        return self._inner.queue_place()


class TaskDesk:
    def __init__(
        self,
        config: ServiceConfig,
        registry: ModelRegistry,
        run: Run,
        *,
        admit: Callable[[], Any],
        release: Callable[[Any], None],
        open_stream: Callable[[GenerationRequest], TextStream],
        serving_length: Callable[[str], int | None],
    ) -> None:
        self.config = config
        self._registry = registry
        self._run = run
        self._admit = admit
        self._release = release
        self._open_stream = open_stream
        self._serving_length = serving_length
        self.batcher = Batcher(run, max_batch_size=config.max_batch_size)
        self._detected: dict[str, Checkpoint | ServiceError] = {}
        self._priors: dict[str, dict[tuple[str, ...], list[float]]] = {}

    # -- kinds ------------------------------------------------------------------------------------

    async def detect(self) -> None:
        """Read every catalog entry's config (no weights): what each model is, for routing and /help."""
        self._detected.update(await self._run(self._detect_all))

    def _detect_all(self) -> dict[str, Checkpoint | ServiceError]:
        found: dict[str, Checkpoint | ServiceError] = {}
        for name in self._registry.names:
            if self.config.models[name].strip().lower().startswith(("http://", "https://")):
                continue  # a model server: no config here to read; it generates
            try:
                found[name] = self._registry.checkpoint(name)
            except ServiceError as exc:
                log.warning("model %s: can't tell its task from its config: %s", name, exc.message)
                found[name] = exc
        return found

    def kind(self, name: str) -> Kind | None:
        """The model's kind, if known already (no I/O: safe on the event loop)."""
        found = self._detected.get(name)
        return found.kind if isinstance(found, Checkpoint) else None

    async def _checkpoint(self, name: str) -> Checkpoint:
        if name not in self._registry.names:
            raise ValidationError(f"unknown model `{name}`; available: {', '.join(self._registry.names)}")
        found = self._detected.get(name)
        setup = fetch_encoder.is_encoder_source(self.config.models[name])
        # The set-up's encoder is looked for again while it is missing: the set-up may have run since.
        if found is None or (setup and isinstance(found, ServiceError)):
            try:
                found = await self._run(self._registry.checkpoint, name)
            except ServiceError as exc:
                found = exc
            self._detected[name] = found
        if isinstance(found, ServiceError):
            if setup:
                raise ModelUnavailableError(
                    fetch_encoder.missing_message(name, self.config.models[name], found.message)
                )
            raise ModelUnavailableError(found.message)
        return found

    def available(self) -> tuple[TaskModels, ...]:
        """For each task beyond generation: the models that do it here, or the fallback, or the hint."""
        default = self.config.default_model
        out = []
        for task in HEAD_TASKS:
            models = tuple(
                name
                for name, found in self._detected.items()
                if isinstance(found, Checkpoint)
                and kinds.serves(task, found.kind, found.config, found.forced)
            )
            fallback = default if not models and kinds.falls_back(task, self.kind(default)) else None
            out.append(
                TaskModels(
                    task,
                    models,
                    fallback,
                    CAUSAL_FALLBACK.get(task) if fallback else None,
                    None if models or fallback else missing(task),
                )
            )
        return tuple(out)

    # -- routing ----------------------------------------------------------------------------------

    async def route(
        self, task: Task, model: str | None, channel_model: str | None, *, labels: tuple[str, ...] = ()
    ) -> Route:
        if model is not None:
            checkpoint = await self._checkpoint(model)
            if kinds.serves(task, checkpoint.kind, checkpoint.config, checkpoint.forced):
                return Route(model, True)
            if kinds.falls_back(task, checkpoint.kind):
                return Route(model, False)
            raise ModelUnavailableError(self._wrong_kind(task, checkpoint))
        for name in self._registry.names:
            found = self._detected.get(name)
            if isinstance(found, Checkpoint) and kinds.serves(task, found.kind, found.config, found.forced):
                if task == "classify" and labels and not _takes_labels(found, labels):
                    continue  # a sentiment classifier can't be asked about topics: zero-shot can
                return Route(name, True)
        if task == "similar":
            for name in self._registry.names:
                if fetch_encoder.is_encoder_source(self.config.models[name]):
                    checkpoint = await self._checkpoint(name)  # refused, saying how, while it is missing
                    if kinds.serves(task, checkpoint.kind, checkpoint.config, checkpoint.forced):
                        return Route(name, True)
        stand_in = channel_model or self.config.default_model
        checkpoint = await self._checkpoint(stand_in)
        if kinds.falls_back(task, checkpoint.kind):
            return Route(stand_in, False)
        raise ModelUnavailableError(missing(task))

    def _wrong_kind(self, task: Task, checkpoint: Checkpoint) -> str:
        what = KIND_WORDS[checkpoint.kind] if checkpoint.kind else "a model of a kind not known here"
        if checkpoint.kind == "seq2seq":
            reason = f"its config says it does {' and '.join(kinds.seq2seq_tasks(checkpoint.config, checkpoint.forced))} only"
        else:
            reason = f"`/{task}` needs {KIND_WORDS[NATIVE_KIND[task]]}"
        can = [f"`{name}`" for m in self.available() if m.task == task for name in m.models]
        others = f" Models here that can: {', '.join(can)}." if can else ""
        return (
            f"Model `{checkpoint.name}` can't `/{task}`: it is {what} (`{checkpoint.architectures}`), and "
            f"{reason}.{others} A channel picks its model for it with `/config set {setting_key(task)}`."
        )

    # -- the tasks ------------------------------------------------------------------------------

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResult:
        name = request.model or self.config.default_model
        await self._checkpoint(name)
        return await self._run(self._tokenize, name, request)  # type: ignore[no-any-return]  # the batch gives this task's result

    def _tokenize(self, name: str, request: TokenizeRequest) -> TokenizeResult:
        tokenizer, context = self._registry.tokenizer(name)
        return tokenize(
            tokenizer,
            request.text,
            request.pair,
            model=name,
            context_length=context,
            serving_length=self._serving_length(name),
        )

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        route = await self.route("classify", request.model, request.channel_model, labels=request.labels)
        if route.native:
            make = self._maker(route.model, "sequence-classification", classify.head_batch)
            return await self._submit(route.model, "classify", request, make)  # type: ignore[no-any-return]  # the batch gives this task's result
        priors = self._priors.setdefault(route.model, {})

        def zero_shot(items: Any) -> classify.ZeroShotBatch:
            return classify.ZeroShotBatch(self._registry.get_head(route.model, "causal"), items, priors)

        return await self._submit(route.model, "classify-zero-shot", request, zero_shot)  # type: ignore[no-any-return]  # the batch gives this task's result

    async def entities(self, request: EntitiesRequest) -> EntitiesResult:
        route = await self.route("entities", request.model, None)
        make = self._maker(route.model, "token-classification", entities.make_batch)
        return await self._submit(route.model, "entities", request, make)  # type: ignore[no-any-return]  # the batch gives this task's result

    async def answer(self, request: AnswerRequest) -> AnswerResult:
        route = await self.route("answer", request.model, None)
        make = self._maker(route.model, "question-answering", answer.make_batch)
        return await self._submit(route.model, "answer", request, make)  # type: ignore[no-any-return]  # the batch gives this task's result

    async def similar(self, request: SimilarRequest) -> SimilarResult:
        route = await self.route("similar", request.model, None)
        make = self._maker(route.model, "features", similar.make_batch)
        return await self._submit(route.model, "similar", request, make)  # type: ignore[no-any-return]  # the batch gives this task's result

    def _maker(self, model: str, head: Kind, batch: Callable[[LoadedModel, Any], Any]) -> MakeBatch:
        return lambda items: batch(self._registry.get_head(model, head), items)

    async def _submit(self, model: str, task: str, request: object, make: MakeBatch) -> Any:
        ticket = self._admit()
        try:
            return await self.batcher.submit(
                (model, task), request, make, timeout=self.config.request_timeout_s
            )
        finally:
            self._release(ticket)

    async def rewrite(self, request: RewriteRequest) -> TaskTextStream:
        """A summary or a translation, streamed: the seq2seq model's, or the instruct model's."""
        route = await self.route(request.kind, request.model, request.channel_model)
        if route.native:
            checkpoint = await self._checkpoint(route.model)
            prompt, target = seq2seq.native_prompt(route.model, checkpoint.config, request)
            generation = GenerationRequest(prompt, request.params, model=route.model)
            method: TaskMethod = "seq2seq"
        else:
            chat = await self._run(self._has_chat_template, route.model)
            prompt, mode, target = seq2seq.causal_prompt(request, chat=chat)
            generation = GenerationRequest(prompt, request.params, mode=mode, model=route.model)
            method = "instruct" if chat else "prompt"
        await self._run(self._check_length, route, generation)
        return TaskTextStream(self._open_stream(generation), route.model, method, target)

    def _has_chat_template(self, name: str) -> bool:
        tokenizer, _ = self._registry.tokenizer(name)
        return bool(getattr(tokenizer, "chat_template", None))

    def _check_length(self, route: Route, request: GenerationRequest) -> None:
        """Refuse a text that would not fit whole: a summary of half a text is no summary of it."""
        tokenizer, context = self._registry.tokenizer(route.model)
        if route.native:
            tokens, limit = len(tokenizer(request.prompt)["input_ids"]), context
            room = ""
        else:
            context = self._serving_length(route.model) or context
            text = request.prompt
            if request.mode == "chat":
                messages = [{"role": "user", "content": request.prompt}]
                # With tokenize=False the template gives text (transformers types every form it can return).
                text = cast(
                    str, tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                )
            tokens = len(tokenizer(text, add_special_tokens=request.mode != "chat")["input_ids"])
            limit = context - request.params.max_new_tokens
            room = f" ({context}-token context less {request.params.max_new_tokens} for the reply)"
        if tokens > limit:
            raise ValidationError(
                f"`text` is too long for model `{route.model}`: {tokens} tokens with the instruction, "
                f"at most {max(limit, 0)}{room}"
            )


def _takes_labels(checkpoint: Checkpoint, labels: tuple[str, ...]) -> bool:
    """A classifier answers these labels: an NLI model any, another only some of its own."""
    own = [name.casefold() for name in kinds.labels(checkpoint.config)]
    if any(name.startswith("entail") for name in own):
        return True
    return all(label.casefold() in own for label in labels)
