"""Reply text made safe: echoed user text cannot reorder or hide what is shown, a reasoning
model's thinking stays out of the answer (or shows as a spoiler), and long answers split into
messages without breaking a code block."""

from __future__ import annotations

from core.render import STILL_THINKING, escape, safe, split_thinking, with_thinking
from core.replies import MESSAGE_LIMIT, split_message


def test_control_and_direction_characters_are_shown_as_replacements() -> None:
    spoofed = "invoice\u202egpj.exe"  # shows as "invoiceexe.jpg" when echoed verbatim
    assert safe(spoofed) == "invoice\ufffdgpj.exe"
    assert (
        safe("bell\x07 and \u2066isolate\u2069 and \u200fmark")
        == "bell\ufffd and \ufffdisolate\ufffd and \ufffdmark"
    )
    assert safe("lines\nand\ttabs stay") == "lines\nand\ttabs stay"
    assert escape("**bold**\u202e") == "\\*\\*bold\\*\\*\ufffd"


def test_thinking_is_left_out_or_shown_as_a_spoiler() -> None:
    text = "<think>The user wants a city.\nParis fits.</think>\n\nParis."
    assert split_thinking(text) == ("Paris.", "The user wants a city.\nParis fits.", False)
    assert with_thinking(text, show=False) == "Paris."
    assert with_thinking(text, show=True) == "💭 ||The user wants a city.\nParis fits.||\n\nParis."
    # A template that opens the block in the prompt: only the closing tag is generated.
    assert with_thinking("weighing it up</think>Paris.", show=False) == "Paris."
    # Still thinking, nothing answered yet: a line says so rather than an empty message.
    assert with_thinking("<think>hmm, let me", show=False) == STILL_THINKING
    assert with_thinking("no tags at all", show=False) == "no tags at all"


def test_a_long_thought_is_cut_so_the_spoiler_never_spans_messages() -> None:
    shown = with_thinking("<think>" + "x || y " * 500 + "</think>Done.", show=True)
    block = shown.split("\n\n")[0]
    assert block.startswith("💭 ||") and block.endswith("…||") and block.count("||") == 2
    assert len(block) < 1000
    assert split_message(shown)[0] == shown  # one message


def test_a_code_block_cut_between_messages_stays_code_in_both() -> None:
    code = "\n".join(f"print({i})  # a line of the program" for i in range(200))
    text = f"Here it is:\n```python\n{code}\n```\nThat's all."
    parts = split_message(text)
    assert len(parts) >= 3 and all(len(p) <= MESSAGE_LIMIT for p in parts)
    for part in parts:
        assert part.count("```") % 2 == 0, part[:40]  # every fence opened in a part is closed there
    assert all(p.startswith("```python\n") for p in parts[1:])
    rejoined = "".join(parts).replace("\n``````python\n", "\n")
    assert rejoined == text  # nothing lost, nothing added but the fences


def test_plain_text_splits_at_words() -> None:
    parts = split_message("word " * 1000)
    assert all(len(p) <= MESSAGE_LIMIT for p in parts) and "".join(parts) == "word " * 1000
    assert all(not p.startswith("ord") for p in parts)
