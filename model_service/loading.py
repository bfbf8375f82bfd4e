"""The load flow: source -> config.json -> model class -> weights, as transformers does it.

A source is a local folder (loaded with ``local_files_only``), a hub id (the cache first,
the network only when allowed), or a ``.gguf`` file; a catalog entry may force a task with a
``:task`` suffix (``task_names.split_task``). Every head of the source document's Auto classes
loads here (``load_head``); a head the task needs but the weights lack is refused rather than
initialised at random. Everything here is blocking and runs on the service's executor.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from model_service import checkpoint_kinds as kinds
from model_service.config import is_gguf
from model_service.errors import ModelUnavailableError
from model_service.fetch import dequantized_twin
from model_service.remote_source import is_remote
from model_service.task_names import AUTO_CLASS, CHECKPOINTS, KIND_WORDS, NATIVE_KIND, Kind, split_task
from model_service.task_names import Task as AnyTask

log = logging.getLogger(__name__)

Task = Literal["generate", "fill-mask"]
Head = Kind  # the Auto class a model is loaded with (causal and masked for generate and fill-mask)
SourceKind = Literal["folder", "hub", "gguf"]

_AUTO: dict[Kind, Any] = {
    "causal": AutoModelForCausalLM,
    "masked": AutoModelForMaskedLM,
    "sequence-classification": AutoModelForSequenceClassification,
    "token-classification": AutoModelForTokenClassification,
    "question-answering": AutoModelForQuestionAnswering,
    "seq2seq": AutoModelForSeq2SeqLM,
    "features": AutoModel,
}
# Heads whose weights must be in the checkpoint: loaded without them, they would answer at random.
_TRAINED_HEADS: frozenset[Kind] = frozenset(
    {"sequence-classification", "token-classification", "question-answering", "seq2seq", "features"}
)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    location: str  # folder path, hub id, or the folder holding the gguf file
    gguf_file: str | None = None

    @property
    def label(self) -> str:
        return str(Path(self.location) / self.gguf_file) if self.gguf_file else self.location


def parse_source(spec: str) -> ModelSource:
    """Tell a folder, a GGUF file and a hub id apart, the way a user writes them (a ``:task``
    suffix, which forces a task, is not part of the source)."""
    if is_remote(spec):
        raise ModelUnavailableError(
            f"model source `{spec.strip()}` is a model server: nothing of it is here to load "
            "(REMOTE_TOKENIZERS may name a local copy of its tokenizer)"
        )
    spec = _without_task(spec)
    if not spec:
        raise ModelUnavailableError("model source is empty: give a folder, a hub id or a .gguf file")
    path = Path(spec).expanduser()
    if is_gguf(spec):
        if not path.is_file():
            raise ModelUnavailableError(f"model source `{spec}`: GGUF file not found")
        return ModelSource("gguf", str(path.parent), path.name)
    if path.is_dir():
        return ModelSource("folder", str(path))
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
    if looks_like_path:
        raise ModelUnavailableError(f"model source `{spec}`: folder not found")
    return ModelSource("hub", spec)


def _without_task(spec: str) -> str:
    try:
        return split_task(spec)[0]
    except ValueError as exc:
        raise ModelUnavailableError(f"model source `{spec.strip()}`: {exc}") from None


def forced_task(spec: str) -> AnyTask | None:
    """The task a catalog entry forces (``source:task``), if any."""
    try:
        return split_task(spec)[1]
    except ValueError:
        return None


def transformers_files(source: ModelSource) -> ModelSource:
    """Where transformers reads a source from: a GGUF's de-quantized twin folder when one lies
    beside it (``fetch.dequantized_twin``), else the source itself."""
    if source.gguf_file is None:
        return source
    twin = dequantized_twin(Path(source.location) / source.gguf_file)
    return source if twin is None else ModelSource("folder", str(twin))


@dataclass
class LoadedModel:
    """One model in memory, shared by every channel that uses it."""

    name: str
    source: ModelSource
    head: Head
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    context_length: int
    parameters: int
    # One forward at a time per model: the executor may run several threads.
    lock: threading.Lock

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError("device `cuda` was requested but no CUDA GPU is available")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ModelUnavailableError("device `mps` was requested but MPS is not available")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested != "auto":
        return _DTYPES[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # bf16 only where the CPU computes it natively; emulated, it is slower than fp32.
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run in hardware (measured 1.7x fp32 at batch 8 here)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _common_kwargs(source: ModelSource, local_only: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"local_files_only": local_only}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    return kwargs


def _read_config(name: str, source: ModelSource, offline: bool) -> tuple[PretrainedConfig, bool]:
    """Read config.json; returns it and whether the files are local (no network needed)."""
    if source.kind == "folder" and not (Path(source.location) / "config.json").is_file():
        raise ModelUnavailableError(
            f"model `{name}`: folder `{source.location}` has no config.json "
            "(a model folder needs config.json, weights, tokenizer.json and tokenizer_config.json)"
        )
    try:
        # Local first: a hub id downloaded once is reused from the cache without a request.
        return AutoConfig.from_pretrained(source.location, **_common_kwargs(source, True)), True
    except (OSError, ValueError) as exc:
        if source.kind != "hub" or isinstance(exc, ValueError):
            raise ModelUnavailableError(
                f"model `{name}`: can't read the config of `{source.label}` ({_first_line(exc)})"
            ) from None
    if offline:
        raise ModelUnavailableError(
            f"model `{name}`: hub id `{source.location}` is not in the local cache and offline mode is on"
        )
    try:
        return AutoConfig.from_pretrained(source.location, **_common_kwargs(source, False)), False
    except OSError as exc:
        raise ModelUnavailableError(
            f"model `{name}`: can't fetch `{source.location}` from the hub ({_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def choose_head(name: str, source: ModelSource, config: PretrainedConfig, task: Task) -> Head:
    """The Auto class follows the task; fill-mask falls back to a causal LM."""
    model_type = getattr(config, "model_type", "")
    architectures = getattr(config, "architectures", None) or []
    # A type with a causal class (BERT has BertLMHeadModel) is causal only if the checkpoint
    # says so, or says nothing; a BertForMaskedLM checkpoint must not generate.
    causal_class = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    causal = causal_class is not None and (
        not architectures
        or any(a == causal_class or a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    )
    masked = model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and (
        not architectures or any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures)
    )
    if task == "fill-mask":
        if masked and not (causal and any(a.endswith("ForCausalLM") for a in architectures)):
            return "masked"
        if causal:
            return "causal"
        raise ModelUnavailableError(
            f"model `{name}` (`{source.label}`, type `{model_type}`) can't fill masks: "
            "it has no masked-LM head and no causal LM head"
        )
    if causal:
        return "causal"
    raise ModelUnavailableError(
        f"model `{name}` (`{source.label}`, type `{model_type}`) can't generate text: it has no causal LM head"
    )


def load(name: str, spec: str, task: Task, *, device: str, dtype: str, offline: bool) -> LoadedModel:
    """Load what ``task`` (generate or fill-mask) needs of the source."""
    source = parse_source(spec)
    config, _ = _read_config(name, transformers_files(source), offline)
    head = choose_head(name, source, config, task)
    return load_head(name, spec, head, device=device, dtype=dtype, offline=offline)


def check_head(name: str, source: ModelSource, config: PretrainedConfig, head: Head) -> None:
    """Refuse a head whose Auto class has no class for this model type, before reading weights."""
    model_type = getattr(config, "model_type", "")
    if head in ("causal", "masked") or model_type in kinds.CLASSES[head]:
        return
    raise ModelUnavailableError(
        f"model `{name}` (`{source.label}`, type `{model_type}`) can't be loaded as "
        f"{KIND_WORDS[head]}: transformers has no `{AUTO_CLASS[head]}` class for type `{model_type}`"
    )


def load_head(name: str, spec: str, head: Head, *, device: str, dtype: str, offline: bool) -> LoadedModel:
    """The seed's flow for one head: source -> config.json -> the head's Auto class -> weights."""
    source = parse_source(spec)
    files = transformers_files(source)
    config, local = _read_config(name, files, offline)
    check_head(name, source, config, head)
    target = pick_device(device)
    torch_dtype = pick_dtype(dtype, target)
    auto = _AUTO[head]
    kwargs = _common_kwargs(files, local)
    log.info("loading model %s from %s (%s, %s, %s)", name, files.label, auto.__name__, target, torch_dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(files.location, **kwargs)
        model, info = auto.from_pretrained(
            files.location, dtype=torch_dtype, low_cpu_mem_usage=True, output_loading_info=True, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"model `{name}`: can't load `{source.label}` ({_first_line(exc)})"
        ) from None
    if head in _TRAINED_HEADS:
        _check_trained(name, source, config, head, info.get("missing_keys", ()))
    if len(tokenizer) < 2:
        raise ModelUnavailableError(
            f"model `{name}`: `{source.label}` has no tokenizer (tokenizer.json, tokenizer_config.json)"
        )
    if head == "masked" and tokenizer.mask_token is None:
        raise ModelUnavailableError(
            f"model `{name}` (`{source.label}`) has a masked-LM head but no mask token"
        )
    if files.gguf_file:
        # GGUF weights arrive de-quantized; the quantizer would only get in the way.
        model.hf_quantizer = None
    model.to(target).eval()
    _ensure_pad_token(tokenizer)
    return LoadedModel(
        name=name,
        source=source,
        head=head,
        model=model,
        tokenizer=tokenizer,
        device=target,
        dtype=torch_dtype,
        context_length=_context_length(config, tokenizer),
        parameters=sum(p.numel() for p in model.parameters()),
        lock=threading.Lock(),
    )


def _check_trained(
    name: str, source: ModelSource, config: PretrainedConfig, head: Head, missing: Any
) -> None:
    # A pooler is not part of the features we use (mean pooling); anything else missing is.
    missing = sorted(key for key in missing if "pooler" not in key)
    if not missing:
        return
    architectures = ", ".join(getattr(config, "architectures", None) or []) or "no architectures"
    task = next((t for t, k in NATIVE_KIND.items() if k == head and t in CHECKPOINTS), None)
    example = f", e.g. `{CHECKPOINTS[task]}`" if task else ""
    raise ModelUnavailableError(
        f"model `{name}` (`{source.label}`, {architectures}) has no trained weights for "
        f"{KIND_WORDS[head]} (missing {', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}): "
        f"it would answer at random. Use a checkpoint made for it{example}, or drop the forced task"
    )


def load_tokenizer(name: str, source: ModelSource, *, network: bool = False) -> PreTrainedTokenizerBase:
    """A source's tokenizer alone (a GGUF's from its twin folder, else rebuilt from the file).

    ``network``: a hub id not in the cache may be fetched (the cache is tried first).
    """
    files = transformers_files(source)
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(files.location, **_common_kwargs(files, True))
        except OSError:
            if not (network and files.kind == "hub"):
                raise
            tokenizer = AutoTokenizer.from_pretrained(files.location, **_common_kwargs(files, False))
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"model `{name}`: can't read the tokenizer of `{source.label}` ({_first_line(exc)})"
        ) from None
    if len(tokenizer) < 2:
        raise ModelUnavailableError(f"model `{name}`: `{source.label}` has no tokenizer")
    return tokenizer


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    # Batching needs a pad token; a causal LM's end-of-text token is the usual stand-in.
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def _context_length(config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase) -> int:
    for attr in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0)
    return limit if 0 < limit < 1_000_000 else 2048


@dataclass(frozen=True)
class Checkpoint:
    """What a catalog entry is before any weights load: its config, its kind, its forced task."""

    name: str
    source: ModelSource
    config: PretrainedConfig
    kind: Kind | None  # None: the config says nothing we know
    forced: AnyTask | None

    @property
    def architectures(self) -> str:
        return ", ".join(getattr(self.config, "architectures", None) or []) or str(self.config.model_type)


def read_checkpoint(name: str, spec: str, *, offline: bool) -> Checkpoint:
    """Read a catalog entry's config and tell its kind (a forced task decides it)."""
    source = parse_source(spec)
    config, _ = _read_config(name, transformers_files(source), offline)
    forced = forced_task(spec)
    kind = NATIVE_KIND[forced] if forced is not None else kinds.detect_kind(config)
    return Checkpoint(name, source, config, kind, forced)


class ModelRegistry:
    """Loads each (source, head) once and shares it, however many channels use it."""

    def __init__(self, catalog: dict[str, str], *, device: str, dtype: str, offline: bool) -> None:
        self._catalog = dict(catalog)
        self._device = device
        self._dtype = dtype
        self._offline = offline
        self._loaded: dict[tuple[str, Head], LoadedModel] = {}
        self._heads: dict[tuple[str, Task], Head] = {}
        self._checkpoints: dict[str, Checkpoint] = {}
        self._tokenizers: dict[str, PreTrainedTokenizerBase] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._catalog)

    def loaded(self) -> list[LoadedModel]:
        return list({id(m): m for m in self._loaded.values()}.values())

    def _spec(self, name: str) -> str:
        spec = self._catalog.get(name)
        if spec is None:
            raise ModelUnavailableError(f"unknown model `{name}`; available: {', '.join(self._catalog)}")
        return spec

    def get(self, name: str, task: Task) -> LoadedModel:
        spec = self._spec(name)
        # Keyed by the head the task needs: a causal LM serves both tasks from one copy.
        with self._lock:
            head = self._heads.get((spec, task))
            if head is None:
                source = parse_source(spec)
                config, _ = _read_config(name, transformers_files(source), self._offline)
                head = self._heads[(spec, task)] = choose_head(name, source, config, task)
            return self._load(name, spec, head)

    def get_head(self, name: str, head: Head) -> LoadedModel:
        """The model loaded with ``head``'s Auto class (each task module asks for its own)."""
        spec = self._spec(name)
        with self._lock:
            return self._load(name, spec, head)

    def _load(self, name: str, spec: str, head: Head) -> LoadedModel:
        if (spec, head) not in self._loaded:
            model = load_head(name, spec, head, device=self._device, dtype=self._dtype, offline=self._offline)
            self._loaded[(spec, head)] = model
        return self._loaded[(spec, head)]

    def checkpoint(self, name: str) -> Checkpoint:
        """The entry's config and kind, read once (no weights)."""
        spec = self._spec(name)
        with self._lock:
            if name not in self._checkpoints:
                self._checkpoints[name] = read_checkpoint(name, spec, offline=self._offline)
            return self._checkpoints[name]

    def tokenizer(self, name: str) -> tuple[PreTrainedTokenizerBase, int]:
        """The entry's tokenizer and its model's context, without loading weights for it."""
        spec = self._spec(name)
        checkpoint = self.checkpoint(name)
        with self._lock:
            loaded = next((m for (s, _), m in self._loaded.items() if s == spec), None)
            if loaded is not None:
                return loaded.tokenizer, loaded.context_length
            if name not in self._tokenizers:
                self._tokenizers[name] = load_tokenizer(name, checkpoint.source, network=not self._offline)
            tokenizer = self._tokenizers[name]
        return tokenizer, _context_length(checkpoint.config, tokenizer)
