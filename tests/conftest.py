"""Session-wide fixtures: tiny real models, built once and shared by every test that loads one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_models import (
    build_no_head,
    build_tiny_bert,
    build_tiny_gguf,
    build_tiny_gpt2,
    service_config,
)

__all__ = ["service_config"]


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 (briefly trained: word-like ASCII output), byte-level BPE, chat template."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a 2-layer BERT masked LM with a WordPiece tokenizer (``[MASK]``)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def no_head_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose config.json is an image model: it can neither generate nor fill masks."""
    return build_no_head(tmp_path_factory.mktemp("no-head"))


@pytest.fixture(scope="session")
def tiny_gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer llama written as a GGUF file (F32), loaded through a ``.gguf`` source."""
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def tiny_catalog(tiny_gpt2_dir: Path, tiny_bert_dir: Path) -> dict[str, Path]:
    """Catalog names for the tiny models; pass to ``service_config`` (the first is the default)."""
    return {"tiny-gpt2": tiny_gpt2_dir, "tiny-bert": tiny_bert_dir}
