"""Pictures of what happens inside the model, as PNG attachments: the likeliest next tokens (a bar
chart), how sure the model was of each token it wrote (tokens coloured by probability), how the
tokenizer splits a text (each token boxed, its id beneath), how alike several texts are (a heat map
of their cosine similarities), and the service's last minutes (/status: a line chart).

Drawn with matplotlib's Agg canvas on a ``Figure`` of its own (no pyplot, no global backend), in
a worker thread (:func:`draw`: ``asyncio.to_thread``), never on the event loop nor on the model
service's executor; one drawing at a time, as matplotlib's caches are not thread-safe. Each
picture is a card with its own neutral dark background and light text (contrast about 13:1), so
it reads the same on Discord's dark and light themes. Each carries its alt text (Discord's
attachment ``description``, read by screen readers), and its figures as JSON in the PNG's
``Comment`` text chunk, so a test can check that what is drawn is the model's own numbers.

Text is drawn in DejaVu Sans Mono (shipped with matplotlib): fixed-width, so token boxes are laid
out without measuring text. A character the font lacks (Chinese, emoji) is written as its code
point (``U+4F60``) rather than drawn as an empty box; user text is never parsed as mathtext.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, ParamSpec

import discord
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.colors import Colormap, to_hex
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.patches import Rectangle
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core.render import safe
from core.replies import NO_MENTIONS, split_message
from domain.errors import UserFacingError
from model_service.api import ModelServiceAPI, ProbabilitiesAPI
from model_service.types import StatusSample, TokenChance, TokenizeResult, TokenPiece

P = ParamSpec("P")

DESCRIPTION_LIMIT = 1024  # Discord's limit for an attachment's description
BACKGROUND = "#2b2d31"  # a neutral dark card: the same picture on dark and light themes
INK = "#f2f3f5"  # text on the card
MUTED = "#b5bac1"  # ids, percentages, notes
DARK_INK = "#111214"  # text on the boxes, all light
DPI = 100
WIDTH_IN = 8.0  # 800 px: Discord shows it at full size on desktop, scaled down on phones
FONT = "DejaVu Sans Mono"
COLUMNS = 64  # character cells across a token picture
# One character cell of a token picture, in whole pixels: text drawn as one string a row lands on
# the boxes only when each glyph's advance is a whole number of pixels (hinting rounds it).
CHAR_PX = 12
SMALL_PX = 9  # the cells of the ids and percentages beneath the boxes
ADVANCE_EM = 1233 / 2048  # DejaVu Sans Mono's advance width
# Token boxes take turns in these colours, so each boundary shows; light, for dark text on them.
TURNS = ("#8ecae6", "#ffd166", "#b8e994", "#f4a6c1", "#c3b1e1")
SPECIAL = "#9aa0a6"  # a token the tokenizer added (<s>, [CLS])
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}

_drawing = threading.Lock()


@dataclass(frozen=True)
class Picture:
    """A drawn picture: its PNG, its file name and its alt text."""

    png: bytes
    filename: str
    description: str

    def file(self) -> discord.File:
        return discord.File(io.BytesIO(self.png), filename=self.filename, description=self.description)


async def draw(fn: Callable[P, Picture], *args: P.args, **kwargs: P.kwargs) -> Picture:
    """Draw in a worker thread: a picture takes tens of milliseconds the event loop must not wait."""
    return await asyncio.to_thread(_locked, fn, *args, **kwargs)


def _locked(fn: Callable[..., Picture], *args: Any, **kwargs: Any) -> Picture:
    with _drawing:
        return fn(*args, **kwargs)


async def send(
    interaction: discord.Interaction, text: str, picture: Picture, *, ephemeral: bool = False
) -> None:
    """The answer with the picture attached to its first message (the rest follow, as
    ``replies.send_long`` splits them); the original response, whether deferred or not."""
    first, *more = split_message(text)
    if interaction.response.is_done():
        await interaction.edit_original_response(
            content=first, attachments=[picture.file()], allowed_mentions=NO_MENTIONS
        )
    else:
        await interaction.response.send_message(
            first, file=picture.file(), allowed_mentions=NO_MENTIONS, ephemeral=ephemeral
        )
    for part in more:
        await interaction.followup.send(part, allowed_mentions=NO_MENTIONS, ephemeral=ephemeral)


def inside(service: ModelServiceAPI) -> ProbabilitiesAPI:
    """The service's probabilities, or a refusal saying this bot's model service gives none."""
    if not isinstance(service, ProbabilitiesAPI):
        raise UserFacingError("This bot's model service gives no probabilities, so there is nothing to draw.")
    return service


# -- text as the font can show it ------------------------------------------------------------------


@cache
def _font_chars() -> frozenset[int]:
    return frozenset(FT2Font(font_manager.findfont(FONT)).get_charmap())


def shown(text: str, *, visible: bool = True) -> str:
    """Text as drawn: spaces and line breaks visible (``visible``, for tokens), characters the font
    lacks as code points, control characters as escapes."""
    chars = _font_chars()
    out = []
    for c in text:
        c = VISIBLE.get(c, c) if visible else c
        if not c.isprintable():
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) in chars:
            out.append(c)
        else:
            out.append(f"U+{ord(c):04X}")
    return "".join(out) or "∅"


def _said(text: str, limit: int = 40) -> str:
    """Text quoted in a title or alt text: one line, cut, made safe (no control or direction marks)."""
    flat = " ".join(text.split()) if text.strip() else text.replace("\n", "↵")
    return safe(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _token(text: str) -> str:
    """A token in alt text: quoted, a line break or tab shown as in the picture, made safe."""
    return "“" + safe(text.replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")) + "”"


def _described(head: str, items: Sequence[str]) -> str:
    """``head`` then as many ``items`` as fit Discord's description limit, and how many did not."""
    text = head
    for i, item in enumerate(items):
        more = f"; and {len(items) - i} more" if i < len(items) - 1 else ""
        candidate = f"{text}{', ' if i else ' '}{item}"
        if len(candidate) + len(more) > DESCRIPTION_LIMIT - 2:
            text += f"; and {len(items) - i} more"
            break
        text = candidate
    return text[:DESCRIPTION_LIMIT]


# -- the card --------------------------------------------------------------------------------------


def _card(height_px: float) -> tuple[Figure, Any]:
    """A figure of the card's colour with one axes over all of it, in pixels, y downwards."""
    figure = Figure(figsize=(WIDTH_IN, height_px / DPI), dpi=DPI, facecolor=BACKGROUND)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_axis_off()
    axes.set_xlim(0, WIDTH_IN * DPI)
    axes.set_ylim(height_px, 0)
    return figure, axes


def _png(figure: Figure, description: str, figures: object) -> bytes:
    """The figure drawn by Agg, as a PNG carrying its alt text and its figures (text chunks)."""
    canvas = figure.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    info = PngInfo()
    info.add_text("Description", description)
    info.add_text("Comment", json.dumps(figures, ensure_ascii=True))
    out = io.BytesIO()
    # Light compression: a few kB more, and the encoding takes a third of the time.
    image.convert("RGB").save(out, format="png", pnginfo=info, compress_level=1)
    return out.getvalue()


def _boxes(axes: Any, boxes: Sequence[tuple[float, float, float, float]], colors: Sequence[str]) -> None:
    """Filled rectangles ``(x, y, width, height)``, drawn as one collection (one draw call, not one each)."""
    shapes = [Rectangle((x, y), w, h) for x, y, w, h in boxes]
    axes.add_collection(PatchCollection(shapes, facecolors=list(colors), linewidths=0))


def _text(axes: Any, x: float, y: float, text: str, **style: Any) -> None:
    axes.text(x, y, text, family=FONT, parse_math=False, **style)


# -- /next: the likeliest next tokens ----------------------------------------------------------------

BAR_ROW_PX = 34
LABEL_PT = 12
LABEL_CHARS = 18  # token labels are cut to this many characters


def next_token_chart(prompt: str, tokens: Sequence[TokenChance], model: str) -> Picture:
    """A bar per token, likeliest at the top; each token and its probability before its bar (one
    text a bar: a text costs about 1 ms to draw)."""
    char = LABEL_PT * DPI / 72 * ADVANCE_EM
    top, left, right = 58, 12 + (LABEL_CHARS + 8) * char + 10, 20
    height = top + BAR_ROW_PX * len(tokens) + 34
    figure, axes = _card(height)
    title = f"Next token after “{shown(_said(prompt, 44), visible=False)}”"
    _text(axes, 12, 24, title, color=INK, fontsize=13, va="center")
    _text(axes, 12, 44, f"{model} · probability of each token", color=MUTED, fontsize=10, va="center")
    span = WIDTH_IN * DPI - left - right
    best = max((t.probability for t in tokens), default=1.0) or 1.0
    bars = []
    for i, token in enumerate(tokens):
        y = top + i * BAR_ROW_PX
        label = f"{_cut(shown(token.token), LABEL_CHARS)} {token.probability:6.1%}"
        _text(
            axes, left - 10, y + BAR_ROW_PX / 2, label, color=INK, fontsize=LABEL_PT, ha="right", va="center"
        )
        bars.append((left, y + 5, max(span * token.probability / best, 1.5), BAR_ROW_PX - 10))
    _boxes(axes, bars, [TURNS[0]] * len(bars))
    _text(
        axes,
        12,
        height - 14,
        "bars scaled to the likeliest; figures are the softmax of the model's raw logits",
        color=MUTED,
        fontsize=9,
        va="center",
    )
    description = _described(
        f"Bar chart: the {len(tokens)} likeliest next tokens after “{_said(prompt)}” on {model}, with "
        "their probabilities:",
        [f"{_token(t.token)} {t.probability:.1%}" for t in tokens],
    )
    figures = [{"token": t.token, "id": t.id, "probability": t.probability} for t in tokens]
    return Picture(_png(figure, description, figures), "next-token.png", description)


# -- token boxes: the tokenizer's split, and how sure the model was ----------------------------------


@dataclass(frozen=True)
class Cell:
    """One token's box: its text, what is written beneath (an id, a percentage), its colour."""

    text: str
    below: str
    color: str


@dataclass(frozen=True)
class Row:
    """One row of boxes as drawn: each cell with its first column and width, and the row's text
    and the line beneath as one string each."""

    cells: tuple[tuple[Cell, int, int], ...]
    text: str
    below: str

    @property
    def cost(self) -> int:
        """About what drawing it costs, in glyphs: each glyph, and each text as much as ~10 glyphs."""
        return len(self.text) + len(self.below) + (20 if self.below else 10)


EM_PX = CHAR_PX / ADVANCE_EM
BOX_PX = 1.45 * EM_PX
ROW_PX = BOX_PX + 1.0 * EM_PX  # a box and the line beneath it
MARGIN_PX = (WIDTH_IN * DPI - COLUMNS * CHAR_PX) / 2
# matplotlib renders each glyph on its own, spaces included (about 0.1 ms each here), and each
# text costs about as much as 10 glyphs: a token picture draws the rows that fit this budget (well
# under 200 ms), and says how many tokens it left out.
MAX_GLYPHS = 800


def _points(advance_px: float) -> float:
    """The font size whose advance is ``advance_px`` pixels."""
    return advance_px / ADVANCE_EM * 72 / DPI


def _line(spots: Sequence[tuple[int, str]], advance_px: float) -> str:
    """One string that shows each ``(x in pixels from the margin, text)`` at about its place in a
    monospace font of ``advance_px``: one text a row instead of one a token (each costs ~1 ms)."""
    out = ""
    for x, text in spots:
        at = max(round(x / advance_px), len(out) + 1 if out else 0)
        out += " " * (at - len(out)) + text
    return out.rstrip()


def layout(cells: Sequence[Cell], columns: int = COLUMNS) -> list[Row]:
    """The cells in reading order, in rows: a cell wider than what is left of a row starts the
    next; one wider than a row is cut to it."""
    rows: list[list[tuple[Cell, int, int]]] = [[]]
    column = 0
    for cell in cells:
        width = min(columns, max(len(cell.text), len(cell.below)) + 1)
        if column and column + width > columns:
            rows.append([])
            column = 0
        rows[-1].append((cell, column, width))
        column += width
    return [
        Row(
            tuple(row),
            _line([(column * CHAR_PX, _cut(cell.text, width - 1)) for cell, column, width in row], CHAR_PX),
            _line([(column * CHAR_PX, cell.below) for cell, column, _ in row], SMALL_PX),
        )
        for row in rows
        if row
    ]


def fitting(rows: Sequence[Row], budget: int = MAX_GLYPHS) -> list[Row]:
    """The first rows whose cost fits ``budget`` (the first row always)."""
    kept: list[Row] = []
    used = 0
    for row in rows:
        used += row.cost
        if kept and used > budget:
            break
        kept.append(row)
    return kept


def _token_boxes(
    rows: Sequence[Row], title: str, subtitle: str, note: str, legend: Sequence[str] = ()
) -> Figure:
    """The card: a title, the rows of boxes with their lines beneath, a note; ``legend`` colours
    (low to high) drawn as swatches at the top right."""
    top = 58
    height = top + max(1, len(rows)) * ROW_PX + 34
    figure, axes = _card(height)
    _text(axes, 12, 24, title, color=INK, fontsize=13, va="center")
    _text(axes, 12, 44, subtitle, color=MUTED, fontsize=10, va="center")
    boxes = [
        (MARGIN_PX + column * CHAR_PX, top + r * ROW_PX, (width - 0.25) * CHAR_PX, BOX_PX)
        for r, row in enumerate(rows)
        for _, column, width in row.cells
    ]
    colors = [cell.color for row in rows for cell, _, _ in row.cells]
    right = WIDTH_IN * DPI - MARGIN_PX - 34  # room for "sure" after the swatches
    swatch = 14
    for i, color in enumerate(legend):
        boxes.append((right - (len(legend) - i) * swatch, 16, swatch, 16))
        colors.append(color)
    _boxes(axes, boxes, colors)
    if legend:
        left = right - len(legend) * swatch - 6
        _text(axes, left, 24, "unsure", color=MUTED, fontsize=9, ha="right", va="center")
        _text(axes, right + 6, 24, "sure", color=MUTED, fontsize=9, va="center")
    pad = 0.4 * CHAR_PX
    for r, row in enumerate(rows):
        y = top + r * ROW_PX
        _text(
            axes,
            MARGIN_PX + pad,
            y + BOX_PX / 2,
            row.text,
            color=DARK_INK,
            fontsize=_points(CHAR_PX),
            va="center",
        )
        if row.below:
            _text(
                axes,
                MARGIN_PX + pad,
                y + BOX_PX + (ROW_PX - BOX_PX) / 2 - 1,
                row.below,
                color=MUTED,
                fontsize=_points(SMALL_PX),
                va="center",
            )
    _text(axes, 12, height - 14, note, color=MUTED, fontsize=9, va="center")
    return figure


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def piece_text(piece: TokenPiece) -> str:
    """What a token stands for, as its box shows it: its text (spaces made visible), its bytes
    where it holds only part of a character, the vocabulary entry for a special token."""
    if piece.special:
        return shown(piece.piece)
    if piece.partial:
        return "‹" + " ".join(f"{b:02x}" for b in piece.partial) + "›"
    return shown(piece.text)


def token_cells(result: TokenizeResult) -> list[Cell]:
    """The tokenizer's split as boxes: each token's text, its id beneath, colours taking turns."""
    return [
        Cell(piece_text(p), str(p.id), SPECIAL if p.special else TURNS[i % len(TURNS)])
        for i, p in enumerate(result.pieces)
    ]


def tokens_picture(result: TokenizeResult) -> Picture:
    """/tokenize: the text with each token's boundary coloured and its id beneath."""
    rows = fitting(layout(token_cells(result)))
    drawn = sum(len(row.cells) for row in rows)
    note = f"{result.count} tokens" + (f"; the first {drawn} shown" if drawn < result.count else "")
    figure = _token_boxes(
        rows,
        f"How {result.model}'s tokenizer splits it",
        f"{result.algorithm} · each box a token, its id beneath · ␣ is a space",
        note,
    )
    description = _described(
        f"The text split into {result.count} tokens by {result.model}'s tokenizer, each token boxed "
        "with its id beneath:",
        [f"{_token(p.piece if p.special else p.text or piece_text(p))} {p.id}" for p in result.pieces],
    )
    figures = [{"id": p.id, "text": piece_text(p)} for p in result.pieces[:drawn]]
    return Picture(_png(figure, description, figures), "tokens.png", description)


UNSURE_BELOW = 0.5  # a token under this probability has its figure written beneath it


@cache
def _colormap() -> Colormap:
    from matplotlib import colormaps

    return colormaps["plasma"]


def sureness_color(probability: float) -> str:
    """A probability's box colour: plasma's light part, magenta (unsure) to yellow (sure), which
    keeps its order in greyscale and to colour-blind eyes, and keeps dark text readable on it."""
    return to_hex(_colormap()(0.42 + 0.58 * max(0.0, min(1.0, probability))))


LEGEND = tuple(sureness_color(i / 9) for i in range(10))  # low to high


def sureness_picture(tokens: Sequence[TokenChance], model: str, *, cut: int = 0) -> Picture:
    """How sure it was: the reply's tokens, each coloured by the probability the model gave it,
    the figure written beneath those it was unsure of."""
    cells = [
        Cell(
            shown(t.token),
            f"{t.probability:.0%}" if t.probability < UNSURE_BELOW else "",
            sureness_color(t.probability),
        )
        for t in tokens
    ]
    rows = fitting(layout(cells))
    drawn = sum(len(row.cells) for row in rows)
    left = len(tokens) - drawn + cut
    mean = sum(t.probability for t in tokens) / len(tokens) if tokens else 0.0
    note = f"figures beneath: tokens it gave under {UNSURE_BELOW:.0%}" + (
        f" · {left} more tokens not shown" if left else ""
    )
    figure = _token_boxes(
        rows,
        "How sure the model was of each token",
        f"{model} · mean probability {mean:.0%}",
        note,
        legend=LEGEND,
    )
    description = _described(
        f"The reply's {len(tokens)} tokens, each coloured by the probability {model} gave it, from "
        f"magenta (unsure) to yellow (sure); mean {mean:.0%}:",
        [f"{_token(t.token)} {t.probability:.0%}" for t in tokens],
    )
    figures = [{"token": t.token, "id": t.id, "probability": t.probability} for t in tokens[:drawn]]
    return Picture(_png(figure, description, figures), "probabilities.png", description)


# -- /similar: how alike several texts are ----------------------------------------------------------

CELL_CHARS = 6  # a matrix cell, in character cells: "-0.05" and a space
CELL_ROW_PX = 34
LABEL_PX = SMALL_PX  # the row labels' advance


def similarity_heat_map(
    texts: Sequence[str], matrix: Sequence[Sequence[float]], model: str, method: str
) -> Picture:
    """Each text against every other: a cell coloured by their cosine (plasma's light part, as the
    probabilities picture: magenta at 0 or below, yellow at 1), its figure written in it. A row's
    figures are one text and the labels one text a row, so the cost grows with the rows, not the cells."""
    n = len(texts)
    cell = CELL_CHARS * CHAR_PX
    right = WIDTH_IN * DPI - 16
    left = right - n * cell
    top = 84
    height = top + n * CELL_ROW_PX + 34
    figure, axes = _card(height)
    _text(axes, 12, 24, f"How alike the {n} texts are", color=INK, fontsize=13, va="center")
    _text(axes, 12, 44, f"{model} · cosine similarity of {method}", color=MUTED, fontsize=10, va="center")
    header = "".join(f"{j + 1:^{CELL_CHARS}}" for j in range(n))
    _text(axes, left, top - 12, header, color=MUTED, fontsize=_points(CHAR_PX), va="center")
    _boxes(
        axes,
        [
            (left + j * cell + 1, top + i * CELL_ROW_PX + 1, cell - 2, CELL_ROW_PX - 2)
            for i in range(n)
            for j in range(n)
        ],
        [sureness_color(value) for row in matrix for value in row],
    )
    room = int((left - 12 - 10) // LABEL_PX)
    for i, text in enumerate(texts):
        y = top + i * CELL_ROW_PX + CELL_ROW_PX / 2
        label = _cut(f"{i + 1} {shown(' '.join(text.split()), visible=False)}", room)
        _text(axes, 12, y, label, color=INK, fontsize=_points(LABEL_PX), va="center")
        figures_row = "".join(f"{value:5.2f} " for value in matrix[i]).rstrip()
        _text(
            axes, left + CHAR_PX / 2, y, figures_row, color=DARK_INK, fontsize=_points(CHAR_PX), va="center"
        )
    _text(
        axes,
        12,
        height - 14,
        "1 = the same meaning · magenta: 0 or below, yellow: 1 · the texts in full are in the message",
        color=MUTED,
        fontsize=9,
        va="center",
    )
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    described = ", ".join(f"{i + 1} {_token(_said(text, 30))}" for i, text in enumerate(texts))
    description = _described(
        f"Heat map: how alike {n} texts are on {model}, by cosine similarity (1 = the same meaning). "
        f"The texts: {described}. Each pair:",
        [f"{i + 1} and {j + 1} {matrix[i][j]:.2f}" for i, j in pairs],
    )
    data = {"texts": list(texts), "matrix": [list(row) for row in matrix]}
    return Picture(_png(figure, description, data), "similarity.png", description)


# -- /status: the last minutes ---------------------------------------------------------------------

PANEL_PX = 64
PANEL_GAP_PX = 26
PLOT_LEFT = 200
# Each panel: its name, its unit, how a figure is written, and the figure of a sample.
SERIES: tuple[tuple[str, str, str, Callable[[StatusSample], float | None]], ...] = (
    ("speed", "tokens/s", ".1f", lambda s: s.tokens_per_s),
    ("queue", "requests", ".0f", lambda s: float(s.queue_depth)),
    ("latency", "s", ".1f", lambda s: s.latency_s),
)


def _ceiling(value: float) -> float:
    """A round top for an axis at or above ``value`` (1, 2, 5 times a power of ten; 1 at least)."""
    top = 1.0
    while top < value:
        for step in (2, 2.5, 2):
            top *= step
            if top >= value:
                break
    return top


def status_chart(samples: Sequence[StatusSample], every_s: float, span_s: float) -> Picture:
    """The service's last ``span_s`` seconds: throughput, queue depth and latency, one panel each,
    a sample every ``every_s`` seconds (a gap where no request finished for latency)."""
    span_s = span_s if span_s > 0 else max([s.ago_s for s in samples] + [every_s, 1.0])
    top = 58
    height = top + len(SERIES) * (PANEL_PX + PANEL_GAP_PX) + 20
    figure, axes = _card(height)
    minutes = span_s / 60
    _text(axes, 12, 24, f"The last {minutes:.0f} minutes", color=INK, fontsize=13, va="center")
    subtitle = f"a sample every {every_s:.0f} s · {len(samples)} so far"
    _text(axes, 12, 44, subtitle, color=MUTED, fontsize=10, va="center")
    width = WIDTH_IN * DPI - 20 - PLOT_LEFT
    xs = [PLOT_LEFT + width * (1 - min(s.ago_s, span_s) / span_s) for s in samples]
    said = []
    for k, (name, unit, form, value_of) in enumerate(SERIES):
        y0 = top + k * (PANEL_PX + PANEL_GAP_PX) + 10
        values = [value_of(s) for s in samples]
        known = [v for v in values if v is not None]
        peak = _ceiling(max(known, default=0.0))
        now = format(known[-1], form) if values and values[-1] is not None else "–"
        _text(axes, 12, y0 + 14, name, color=INK, fontsize=12, va="center")
        _text(axes, 12, y0 + 36, f"now {now} {unit}", color=MUTED, fontsize=10, va="center")
        _text(axes, PLOT_LEFT - 8, y0, f"{peak:g}", color=MUTED, fontsize=8, ha="right", va="center")
        _text(axes, PLOT_LEFT - 8, y0 + PANEL_PX, "0", color=MUTED, fontsize=8, ha="right", va="center")
        axes.plot([PLOT_LEFT, PLOT_LEFT + width], [y0, y0], color="#3f4147", linewidth=1)
        axes.plot([PLOT_LEFT, PLOT_LEFT + width], [y0 + PANEL_PX] * 2, color=MUTED, linewidth=1)
        ys = [y0 + PANEL_PX * (1 - v / peak) if v is not None else float("nan") for v in values]
        axes.plot(
            xs, ys, color=TURNS[k], linewidth=2, marker="o" if len(samples) == 1 else None, markersize=3
        )
        peak_said = f"at most {max(known):{form}}" if known else "none yet"
        said.append(f"{name} now {now} {unit} ({peak_said})")
    base = top + len(SERIES) * (PANEL_PX + PANEL_GAP_PX) + 2
    for at, label in ((0.0, f"{minutes:.0f} min ago"), (0.5, f"{minutes / 2:g} min ago"), (1.0, "now")):
        align = "left" if at == 0 else "right" if at == 1 else "center"
        _text(axes, PLOT_LEFT + width * at, base, label, color=MUTED, fontsize=9, ha=align, va="center")
    description = _described(
        f"Line chart of the bot's last {minutes:.0f} minutes, a sample every {every_s:.0f} s "
        f"({len(samples)} samples):",
        said,
    )
    data = {
        "every_s": every_s,
        "span_s": span_s,
        "samples": [
            {
                "ago_s": s.ago_s,
                "tokens_per_s": s.tokens_per_s,
                "queue_depth": s.queue_depth,
                "latency_s": s.latency_s,
            }
            for s in samples
        ],
    }
    return Picture(_png(figure, description, data), "status.png", description)
