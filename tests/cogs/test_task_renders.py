"""What the task commands' replies look like, from plain results (no model, no Discord)."""

from __future__ import annotations

import pytest

from app.environment import ConfigError, load_config
from cogs import tasks as task_cog
from cogs import tokenize as tokenize_cog
from core.replies import split_message
from model_service.types import (
    EntitiesResult,
    Entity,
    SimilarResult,
    TokenizeRequest,
    TokenizeResult,
    TokenPiece,
)


def _result(pieces: list[TokenPiece], *, types: bool = False) -> TokenizeResult:
    ids = tuple(p.id for p in pieces)
    return TokenizeResult(
        "tiny", tuple(pieces), ids, (1,) * len(ids), (0,) * len(ids) if types else None, 256, None, "BPE", 400
    )


def test_a_long_tokenization_keeps_its_table_in_the_first_message() -> None:
    text = "word " * 1200
    pieces = [TokenPiece(i, "Ġword", " word", (), False, 5 * i, 5 * i + 5, 0) for i in range(1200)]
    rendered = tokenize_cog.render(TokenizeRequest(text.strip()), _result(pieces))
    first = split_message(rendered)[0]
    assert first.count("```") == 2  # the code block opens and closes in one message
    assert "more tokens" in first and "1,200 tokens" in first and "⚠️ longer than that" in first
    assert "… +1100]" in rendered  # the lists show the first 100 entries, then how many more


def test_backticks_cannot_end_the_code_block_and_bytes_say_their_character() -> None:
    text = "```你"
    pieces = [
        TokenPiece(0, "```", "```", (), False, 0, 3, 0),
        TokenPiece(1, "ä½", "", (228, 189), False, 3, 4, 0),
        TokenPiece(2, "ł", "", (160,), False, 3, 4, 0),
    ]
    rendered = tokenize_cog.render(TokenizeRequest(text), _result(pieces))
    assert rendered.count("```") == 2
    assert "‹e4 bd› part of 你" in rendered and "‹a0› part of 你" in rendered


def test_entities_are_marked_and_the_rest_of_the_text_is_escaped() -> None:
    text = "*Ada* met Bob in Paris"
    result = EntitiesResult(
        text, (Entity("PER", 0.9, "bob", 10, 13), Entity("LOC", 0.8, "paris", 17, 22)), "ner", 0.0
    )
    first = task_cog.render_entities(result).splitlines()[0]
    assert first == r"\*Ada\* met **Bob**`PER` in **Paris**`LOC`"


def test_a_forced_task_that_is_no_task_stops_the_start_naming_the_model() -> None:
    with pytest.raises(ConfigError, match="model `ner`: unknown task `entity` after `models/ner`"):
        load_config({"MODELS": "ner=models/ner:entity"})
    assert load_config({"MODELS": "ner=models/ner:entities"}).service.models["ner"] == "models/ner:entities"


def test_several_texts_are_numbered_and_their_pairs_ranked_most_alike_first() -> None:
    texts = ("A *cat* sat.", "A kitten sat\non the mat.", "Stocks fell.")
    matrix = ((1.0, 0.8, -0.1), (0.8, 1.0, 0.05), (-0.1, 0.05, 1.0))
    result = SimilarResult(matrix, "minilm", (5, 8, 4), 0.25, ("cls_token",))
    lines = task_cog.render_several(texts, result).splitlines()
    assert lines[1:4] == ["**1.** A \\*cat\\* sat.", "**2.** A kitten sat on the mat.", "**3.** Stocks fell."]
    assert lines[4:7] == [
        "` 0.800` `██████████░░` **1** & **2**",
        "` 0.050` `█░░░░░░░░░░░` **2** & **3**",
        "`-0.100` `░░░░░░░░░░░░` **1** & **3**",
    ]
    assert lines[-1] == "-# minilm · [CLS]-token AutoModel features · 5 + 8 + 4 tokens · 0.2 s"
