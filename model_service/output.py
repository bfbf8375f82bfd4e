"""Text generation's postprocess: tokens into text as they come, and stop sequences held back.

Decoding is transformers' ``TextStreamer`` logic (word-boundary aware, multi-byte safe); text
that may be the start of a stop sequence waits until it is known not to be one.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase, TextStreamer


class StopFilter:
    """Holds back text that might be the start of a stop sequence; cuts at a full match."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self._pending += text
        cut = min((i for s in self._stops if (i := self._pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        safe = len(self._pending) - self._hold
        if safe <= 0:
            return ""
        out, self._pending = self._pending[:safe], self._pending[safe:]
        return out

    def flush(self) -> str:
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out


class TextDecoder(TextStreamer):
    """transformers' word-boundary-aware incremental decoding, handing text back instead of printing."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self._out: list[str] = []

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self._out.append(text)

    def push(self, token: int) -> str:
        self.put(torch.tensor([token]))
        return self._drain()

    def flush(self) -> str:
        self.end()
        return self._drain()

    def _drain(self) -> str:
        text, self._out = "".join(self._out), []
        return text
