"""The pictures: PNGs with their alt text, drawn off the event loop, showing the figures they are given.

Each PNG carries its figures as JSON (its ``Comment`` text chunk): the tests read them back with
Pillow and check them against the tokenizer and the numbers the picture was drawn from.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path
from typing import Any

from PIL import Image
from transformers import AutoTokenizer

from core import pictures
from model_service.tasks.tokenize import tokenize
from model_service.types import StatusSample, TokenChance, TokenizeResult, TokenPiece

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT = "Hello, world! 你好 🤗 $x$ costs `5`"


def read(picture: pictures.Picture) -> tuple[Image.Image, dict[str, Any]]:
    assert picture.png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(picture.png))
    image.load()
    return image, dict(image.text)  # type: ignore[attr-defined]


def tokenized(folder: Path, text: str = TEXT) -> TokenizeResult:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return tokenize(tokenizer, text, None, model="tiny", context_length=256, serving_length=None)


def test_the_tokens_picture_shows_the_tokenizers_own_ids(tiny_gpt2_dir: Path) -> None:
    result = tokenized(tiny_gpt2_dir)
    ids = AutoTokenizer.from_pretrained(tiny_gpt2_dir)(TEXT)["input_ids"]
    assert [int(cell.below) for cell in pictures.token_cells(result)] == ids
    picture = pictures.tokens_picture(result)
    image, text = read(picture)
    assert [entry["id"] for entry in json.loads(text["Comment"])] == ids
    assert text["Description"] == picture.description and len(picture.description) <= 1024
    assert picture.description.startswith(f"The text split into {len(ids)} tokens by tiny's tokenizer")
    first = result.pieces[0]
    assert f": “{first.text}” {ids[0]}, " in picture.description
    assert image.width == 800 and picture.filename == "tokens.png"


def test_each_token_is_drawn_at_its_boxs_column() -> None:
    cells = [
        pictures.Cell(text, str(i), "#ffffff") for i, text in enumerate(["␣a", "bcd", "e" * 70, "f"] * 5)
    ]
    rows = pictures.layout(cells)
    for row in rows:
        end = 0
        for cell, column, width in row.cells:
            assert column >= end and column + width <= pictures.COLUMNS  # no overlap, inside the card
            end = column + width
            drawn = pictures._cut(cell.text, width - 1)
            assert row.text[column : column + len(drawn)] == drawn  # the one string puts it on its box
    assert sum(len(row.cells) for row in rows) == len(cells)


def test_a_long_text_is_drawn_up_to_the_budget_and_says_how_many_are_left() -> None:
    many = 500
    pieces = tuple(TokenPiece(i, f"Ġw{i}", f" w{i}", (), False, 0, 0, 0) for i in range(many))
    result = TokenizeResult("m", pieces, tuple(range(many)), (1,) * many, None, 2048, None, "BPE", 9)
    _, text = read(pictures.tokens_picture(result))
    drawn = len(json.loads(text["Comment"]))
    assert 20 < drawn < many
    assert sum(row.cost for row in pictures.fitting(pictures.layout(pictures.token_cells(result)))) <= (
        pictures.MAX_GLYPHS
    )
    assert len(text["Description"]) <= 1024 and text["Description"].endswith("more")


def test_characters_the_font_lacks_are_written_as_code_points() -> None:
    assert pictures.shown(" a\n") == "␣a↵"
    assert pictures.shown("你") == "U+4F60" and pictures.shown("🤗") == "U+1F917"
    assert pictures.shown("") == "∅"


def test_the_next_token_chart_carries_the_figures_it_was_given() -> None:
    tokens = [
        TokenChance(" Paris", 7042, 0.7719),
        TokenChance(" the", 260, 0.063),
        TokenChance("\n", 198, 0.01),
    ]
    picture = pictures.next_token_chart("The capital of France is", tokens, "smollm2")
    _, text = read(picture)
    assert json.loads(text["Comment"]) == [
        {"token": t.token, "id": t.id, "probability": t.probability} for t in tokens
    ]
    assert picture.description == (
        "Bar chart: the 3 likeliest next tokens after “The capital of France is” on smollm2, with their "
        "probabilities: “ Paris” 77.2%, “ the” 6.3%, “↵” 1.0%"
    )


def test_the_sureness_picture_colours_by_probability() -> None:
    tokens = [TokenChance(f" w{i}", i, p) for i, p in enumerate([0.05, 0.5, 0.99])]
    picture = pictures.sureness_picture(tokens, "tiny", cut=2)
    _, text = read(picture)
    assert [entry["probability"] for entry in json.loads(text["Comment"])] == [0.05, 0.5, 0.99]
    assert "“ w0” 5%, “ w1” 50%, “ w2” 99%" in picture.description
    colors = [pictures.sureness_color(p) for p in (0.0, 0.5, 1.0)]
    assert len(set(colors)) == 3
    # lighter as it is surer: the order reads in greyscale too
    greys = [
        sum(int(c[i : i + 2], 16) * w for i, w in ((1, 0.2126), (3, 0.7152), (5, 0.0722))) for c in colors
    ]
    assert greys == sorted(greys)


async def test_pictures_are_drawn_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def drawing(word: str) -> pictures.Picture:
        seen.append(threading.get_ident())
        return pictures.next_token_chart(word, [TokenChance(" a", 1, 1.0)], "m")

    pictures_at_once = await asyncio.gather(*(pictures.draw(drawing, w) for w in ("a", "b")))
    assert all(p.png.startswith(PNG_SIGNATURE) for p in pictures_at_once)
    assert loop_thread not in seen


def test_a_file_carries_the_alt_text() -> None:
    picture = pictures.next_token_chart("x", [TokenChance(" a", 1, 1.0)], "m")
    file = picture.file()
    assert (file.filename, file.description) == ("next-token.png", picture.description)


def test_the_heat_map_carries_every_pairs_figure_and_the_texts() -> None:
    texts = (
        "A man is playing a guitar.",
        "Someone plays an instrument.",
        "The stock market fell sharply today.",
    )
    matrix = ((1.0, 0.6712, -0.0513), (0.6712, 1.0, 0.0021), (-0.0513, 0.0021, 1.0))
    picture = pictures.similarity_heat_map(texts, matrix, "minilm", "mean-pooled AutoModel features")
    image, text = read(picture)
    assert json.loads(text["Comment"]) == {"texts": list(texts), "matrix": [list(row) for row in matrix]}
    assert picture.description == (
        "Heat map: how alike 3 texts are on minilm, by cosine similarity (1 = the same meaning). The texts: "
        "1 “A man is playing a guitar.”, 2 “Someone plays an instrument.”, 3 “The stock market fell sharply…”. "
        "Each pair: 1 and 2 0.67, 1 and 3 -0.05, 2 and 3 0.00"
    )
    assert image.width == 800 and picture.filename == "similarity.png"
    # Each cell is filled with its figure's colour (read just inside its corner, clear of the figure).
    cell = pictures.CELL_CHARS * pictures.CHAR_PX
    left = 800 - 16 - len(texts) * cell
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            pixel = image.convert("RGB").getpixel((left + j * cell + 4, 84 + i * pictures.CELL_ROW_PX + 4))
            assert "#{:02x}{:02x}{:02x}".format(*pixel) == pictures.sureness_color(value), (i, j)


def test_the_heat_map_of_eight_long_texts_fits_the_alt_text_limit() -> None:
    texts = tuple(f"text number {i} " * 40 for i in range(8))
    matrix = tuple(tuple(1.0 if i == j else 0.1 * (i + j) / 14 for j in range(8)) for i in range(8))
    picture = pictures.similarity_heat_map(texts, matrix, "m", "mean-pooled")
    _, text = read(picture)
    assert len(picture.description) <= 1024 and text["Description"] == picture.description
    assert json.loads(text["Comment"])["matrix"] == [list(row) for row in matrix]


def test_the_status_chart_carries_the_samples_it_was_drawn_from() -> None:
    samples = [
        StatusSample(600.0 - 5 * i, 10.0 * (i % 4), i % 3, None if i % 2 else 1.25 + i) for i in range(120)
    ]
    picture = pictures.status_chart(samples, 5.0, 600.0)
    image, text = read(picture)
    drawn = json.loads(text["Comment"])
    assert (drawn["every_s"], drawn["span_s"]) == (5.0, 600.0)
    assert drawn["samples"] == [
        {
            "ago_s": s.ago_s,
            "tokens_per_s": s.tokens_per_s,
            "queue_depth": s.queue_depth,
            "latency_s": s.latency_s,
        }
        for s in samples
    ]
    last = samples[-1]
    assert picture.description == (
        "Line chart of the bot's last 10 minutes, a sample every 5 s (120 samples): "
        f"speed now {last.tokens_per_s:.1f} tokens/s (at most 30.0), queue now {last.queue_depth} requests "
        "(at most 2), latency now – s (at most 119.2)"
    )
    assert image.width == 800 and picture.filename == "status.png"


def test_a_status_chart_with_one_sample_and_no_latency_yet_is_drawn() -> None:
    picture = pictures.status_chart([StatusSample(0.0, 0.0, 0, None)], 5.0, 600.0)
    _, text = read(picture)
    assert len(json.loads(text["Comment"])["samples"]) == 1
    assert "latency now – s (none yet)" in picture.description
