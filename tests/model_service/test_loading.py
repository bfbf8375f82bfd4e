"""The load flow a user's catalog entry goes through: source -> config.json -> model class -> weights."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from model_service import generation, loading
from model_service.errors import ModelUnavailableError
from model_service.loading import ModelRegistry, ModelSource, load, parse_source
from model_service.types import GenerationParams, GenerationRequest
from tests.fixtures import generation as alone


def load_cpu(
    spec: Path | str, task: loading.Task, *, name: str = "m", dtype: str = "float32"
) -> loading.LoadedModel:
    return load(name, str(spec), task, device="cpu", dtype=dtype, offline=True)


def refusal(spec: Path | str, task: loading.Task, *, name: str = "m") -> str:
    with pytest.raises(ModelUnavailableError) as caught:
        load_cpu(spec, task, name=name)
    return caught.value.message


def copy_without(source: Path, target: Path, *, keep: tuple[str, ...]) -> Path:
    target.mkdir()
    for name in keep:
        shutil.copy(source / name, target / name)
    return target


# -- telling sources apart ---------------------------------------------------------------------


def test_parse_source_folder(tiny_gpt2_dir: Path) -> None:
    assert parse_source(f"  {tiny_gpt2_dir}  ") == ModelSource("folder", str(tiny_gpt2_dir))


def test_parse_source_gguf_file(tiny_gguf_path: Path) -> None:
    source = parse_source(str(tiny_gguf_path))
    assert source == ModelSource("gguf", str(tiny_gguf_path.parent), tiny_gguf_path.name)
    assert source.label == str(tiny_gguf_path)


def test_parse_source_missing_gguf(tmp_path: Path) -> None:
    missing = tmp_path / "nope.Q4.gguf"
    with pytest.raises(ModelUnavailableError, match="GGUF file not found") as caught:
        parse_source(str(missing))
    assert str(missing) in caught.value.message


@pytest.mark.parametrize("spec", ["HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2", "bert-base-uncased"])
def test_parse_source_hub_id(spec: str) -> None:
    assert parse_source(spec) == ModelSource("hub", spec)


@pytest.mark.parametrize("spec", ["./models/missing", "/no/such/folder", "~/nowhere-xyz", "a/b/c"])
def test_parse_source_missing_path_is_not_mistaken_for_a_hub_id(spec: str) -> None:
    with pytest.raises(ModelUnavailableError, match="folder not found"):
        parse_source(spec)


@pytest.mark.parametrize("spec", ["", "   "])
def test_parse_source_blank_is_refused(spec: str) -> None:
    with pytest.raises(ModelUnavailableError):
        parse_source(spec)


# -- what a broken source tells the user -------------------------------------------------------


def test_folder_without_config_names_the_folder_and_file(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    folder = copy_without(tiny_gpt2_dir, tmp_path / "half", keep=("tokenizer.json", "model.safetensors"))
    message = refusal(folder, "generate", name="mine")
    assert "`mine`" in message
    assert str(folder) in message
    assert "config.json" in message


def test_folder_without_weights_says_what_is_missing(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    folder = copy_without(tiny_gpt2_dir, tmp_path / "no-weights", keep=("config.json", "tokenizer.json"))
    message = refusal(folder, "generate")
    assert str(folder) in message
    assert "model.safetensors" in message


def test_unreadable_config_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "garbled"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    assert f"can't read the config of `{folder}`" in refusal(folder, "generate")


def test_unknown_model_type_is_a_model_error(tmp_path: Path) -> None:
    folder = tmp_path / "future-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "brand-new-arch"}))
    assert "brand-new-arch" in refusal(folder, "generate")


def test_folder_without_tokenizer_is_refused_at_load(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    folder = copy_without(tiny_gpt2_dir, tmp_path / "no-tok", keep=("config.json", "model.safetensors"))
    assert "tokenizer" in refusal(folder, "generate")


def test_masked_lm_without_mask_token_is_refused(tmp_path: Path, tiny_bert_dir: Path) -> None:
    folder = tmp_path / "bert-no-mask"
    shutil.copytree(tiny_bert_dir, folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    del settings["mask_token"]
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    message = refusal(folder, "fill-mask", name="bert")
    assert message == f"model `bert` (`{folder}`) has a masked-LM head but no mask token"


def test_model_without_a_usable_head(no_head_dir: Path) -> None:
    fill = refusal(no_head_dir, "fill-mask", name="vision")
    assert fill == (
        f"model `vision` (`{no_head_dir}`, type `resnet`) can't fill masks: "
        "it has no masked-LM head and no causal LM head"
    )
    generate = refusal(no_head_dir, "generate", name="vision")
    assert str(no_head_dir) in generate
    assert "can't generate text: it has no causal LM head" in generate


# -- hub ids never touch the network when offline ----------------------------------------------


@pytest.fixture
def hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty Hugging Face cache, offline, and a network that fails the test if dialled."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these once at import; the lookups read the module attributes.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dialled: list[object] = []

    def no_network(*args: object, **kwargs: object) -> socket.socket:
        dialled.append(args)
        raise OSError("the network is off in tests")

    monkeypatch.setattr(socket, "create_connection", no_network)
    yield cache
    assert dialled == [], f"the loader tried the network: {dialled}"


def test_uncached_hub_id_offline_fails_fast_and_says_why(hf_cache: Path) -> None:
    started = time.monotonic()
    message = refusal("someone/tiny-model", "generate", name="hubby")
    assert time.monotonic() - started < 2
    assert message == (
        "model `hubby`: hub id `someone/tiny-model` is not in the local cache and offline mode is on"
    )


def test_cached_hub_id_loads_offline(hf_cache: Path, tiny_gpt2_dir: Path) -> None:
    # The layout huggingface_hub leaves behind after one download.
    repo = hf_cache / "models--someone--tiny-gpt2"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_gpt2_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = load_cpu("someone/tiny-gpt2", "generate")
    assert loaded.source == ModelSource("hub", "someone/tiny-gpt2")
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"


# -- the Auto class follows the task -----------------------------------------------------------


def test_bert_fills_masks_with_its_masked_lm_head(tiny_bert_dir: Path) -> None:
    loaded = load_cpu(tiny_bert_dir, "fill-mask")
    assert loaded.head == "masked"
    assert type(loaded.model).__name__ == "BertForMaskedLM"
    assert loaded.tokenizer.mask_token == "[MASK]"


@pytest.mark.parametrize("task", ["generate", "fill-mask"])
def test_gpt2_is_causal_for_both_tasks(tiny_gpt2_dir: Path, task: loading.Task) -> None:
    loaded = load_cpu(tiny_gpt2_dir, task)
    assert loaded.head == "causal"
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"
    assert loaded.context_length == loaded.model.config.n_positions
    assert not loaded.model.training


def test_masked_lm_checkpoint_refuses_to_generate(tiny_bert_dir: Path) -> None:
    assert "can't generate text" in refusal(tiny_bert_dir, "generate")


def test_gguf_file_loads_as_a_causal_lm(tiny_gguf_path: Path, tiny_gpt2_dir: Path) -> None:
    loaded = load_cpu(tiny_gguf_path, "generate")
    assert loaded.source.kind == "gguf"
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    assert loaded.model.hf_quantizer is None
    assert loaded.has_chat_template
    # The tokenizer was rebuilt from the GGUF's vocabulary: same ids as the folder's tokenizer.
    folder_tokenizer = load_cpu(tiny_gpt2_dir, "generate").tokenizer
    text = "Once upon a time, the dog barked."
    assert loaded.tokenizer(text)["input_ids"] == folder_tokenizer(text)["input_ids"]
    request = GenerationRequest("Once upon a time", GenerationParams(max_new_tokens=8, temperature=0))
    raw = alone.run(loaded, generation.prepare(loaded, request), request.params, lambda _: None, lambda: None)
    assert raw.generated_tokens == 8


# -- device and dtype --------------------------------------------------------------------------


def test_bfloat16_really_gives_bfloat16_weights(tiny_gpt2_dir: Path) -> None:
    loaded = load_cpu(tiny_gpt2_dir, "generate", dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_on_cpu_is_bf16_only_where_the_cpu_has_it(
    tiny_gpt2_dir: Path, monkeypatch: pytest.MonkeyPatch, native_bf16: bool, expected: torch.dtype
) -> None:
    monkeypatch.setattr(loading, "cpu_has_native_bf16", lambda: native_bf16)
    loaded = load("m", str(tiny_gpt2_dir), "generate", device="cpu", dtype="auto", offline=True)
    assert {p.dtype for p in loaded.model.parameters()} == {expected}
    assert next(loaded.model.parameters()).device.type == "cpu"


def test_native_bf16_is_read_from_the_cpu_flags() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    has = any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))
    assert loading.cpu_has_native_bf16() == has


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_gpt2_dir: Path) -> None:
    with pytest.raises(ModelUnavailableError) as caught:
        load("m", str(tiny_gpt2_dir), "generate", device="cuda", dtype="auto", offline=True)
    assert caught.value.message == "device `cuda` was requested but no CUDA GPU is available"


# -- the registry loads each source once -------------------------------------------------------


def registry(**catalog: Path) -> ModelRegistry:
    return ModelRegistry({k: str(v) for k, v in catalog.items()}, device="cpu", dtype="float32", offline=True)


def test_causal_model_is_loaded_once_for_both_tasks(tiny_gpt2_dir: Path) -> None:
    models = registry(gpt=tiny_gpt2_dir)
    first = models.get("gpt", "generate")
    assert models.get("gpt", "fill-mask") is first
    assert models.get("gpt", "generate") is first
    assert models.loaded() == [first]


def test_masked_model_is_loaded_once(tiny_bert_dir: Path, tiny_gpt2_dir: Path) -> None:
    models = registry(gpt=tiny_gpt2_dir, bert=tiny_bert_dir)
    bert = models.get("bert", "fill-mask")
    assert models.get("bert", "fill-mask") is bert
    gpt = models.get("gpt", "generate")
    assert {id(m) for m in models.loaded()} == {id(bert), id(gpt)}


def test_unknown_catalog_name_lists_the_available_ones(tiny_gpt2_dir: Path) -> None:
    with pytest.raises(ModelUnavailableError) as caught:
        registry(gpt=tiny_gpt2_dir, other=tiny_gpt2_dir).get("gtp", "generate")
    assert caught.value.message == "unknown model `gtp`; available: gpt, other"


def test_a_failed_load_is_not_cached(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    # Fixing the folder (the fetch finished, the user copied the files) must be enough.
    folder = tmp_path / "later"
    folder.mkdir()
    models = registry(later=folder)
    with pytest.raises(ModelUnavailableError):
        models.get("later", "generate")
    shutil.rmtree(folder)
    shutil.copytree(tiny_gpt2_dir, folder)
    assert models.get("later", "generate").head == "causal"


def test_fill_mask_keeps_the_masked_head_after_a_generate_attempt(tiny_bert_dir: Path) -> None:
    models = registry(bert=tiny_bert_dir)
    with contextlib.suppress(ModelUnavailableError):
        models.get("bert", "generate")
    assert models.get("bert", "fill-mask").head == "masked"
