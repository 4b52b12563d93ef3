"""Reading an index document file a piece at a time: its top-level members, and the items of
`models` one by one, in memory bounded by the largest single model (never the document).

The top level is tokenized here (`{`, keys, `:`, `,`, `[`); every value (the meta, each model) is
decoded by the standard library's C decoder (`JSONDecoder.raw_decode`) from a sliding buffer,
which grows only while a value is longer than what was read so far (up to MAX_VALUE_CHARS).
Errors carry the line and column in the file, as `json.loads`'s do.

A model of an indented document (what `swreg export` writes) is decoded by msgspec instead, about
three times as fast: its end is guessed as the first line that closes a brace at the indent of
its opening one, and msgspec decodes the text up to there. JSON objects are prefix-free, so when
msgspec takes that text whole it is exactly the value `raw_decode` would read; whenever it does
not (a wrong guess, compact text, NaN, a lone surrogate, a number out of range), the value is
read by `raw_decode` as before, errors and all.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec

from registry.errors import InvalidInput

# Characters read from the file at once.
READ_CHARS = 1 << 20
# One value (one model with its profile and evidence) larger than this is refused: a model of
# a real detection report is ~50-200 KB.
MAX_VALUE_CHARS = 256 << 20
MODELS_KEY = "models"
# A value cut by the end of a read fails within this many characters of it ("fals", "-1e").
CUT_SHORT_CHARS = 8

# The marker of a `models` list's start (see `members`).
ARRAY = object()

_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _not_json(name: str) -> float:
    # Python's json reads NaN and Infinity; JSON has no such values (the index writes them as
    # strings), and export could not write them back.
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_not_json)
_FAST_DECODE = msgspec.json.Decoder().decode


class NotJson(ValueError):
    """The file is not JSON: `message` at `line`, `column` (1-based)."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"{message} at line {line} column {column}")
        self.message, self.line, self.column = message, line, column


class _Buffer:
    def __init__(self, handle: TextIO):
        self.handle = handle
        self.text = ""
        self.pos = 0
        self.eof = False
        # Characters dropped from the front of `text`: positions in the file are this + pos.
        self.dropped = 0

    def fill(self, at_least: int = READ_CHARS) -> bool:
        """Drop what was consumed, read more; False at the end of the file."""
        if self.eof:
            return False
        data = self.handle.read(max(READ_CHARS, at_least))
        if not data:
            self.eof = True  # nothing dropped: positions in `text` stay valid for errors
            return False
        self.dropped += self.pos
        self.text = self.text[self.pos :] + data
        self.pos = 0
        return True

    def where(self, pos: int) -> tuple[int, int]:
        """Line and column (1-based) of `text[pos]`: counted only for an error, by reading the
        file again up to there (nothing is counted while all goes well)."""
        offset = self.dropped + pos
        self.handle.seek(0)
        line, column, left = 1, 1, offset
        while left > 0:
            piece = self.handle.read(min(READ_CHARS, left))
            if not piece:
                break
            left -= len(piece)
            newlines = piece.count("\n")
            if newlines:
                line += newlines
                column = len(piece) - piece.rfind("\n")
            else:
                column += len(piece)
        return line, column

    def fail(self, message: str, pos: int | None = None) -> NotJson:
        return NotJson(message, *self.where(self.pos if pos is None else pos))

    def skip_whitespace(self) -> str:
        """The next significant character ('' at the end of the file), not consumed."""
        while True:
            found = _WHITESPACE.match(self.text, self.pos)
            assert found is not None  # the pattern matches the empty string too
            self.pos = found.end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return ""

    def expect(self, characters: str, what: str) -> str:
        found = self.skip_whitespace()
        if not found or found not in characters:
            raise self.fail(f"Expecting {what}")
        self.pos += 1
        return found

    def value(self) -> Any:
        """The JSON value starting at the next significant character."""
        if not self.skip_whitespace():
            raise self.fail("Expecting value")
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                # Perhaps only cut short by the end of what was read: read more and retry.
                if _maybe_cut_short(exc, len(self.text)) and self._more():
                    continue
                raise self.fail(exc.msg, exc.pos) from None
            except ValueError as exc:  # NaN or Infinity: in this value (which starts here)
                raise self.fail(str(exc)) from None
            if end == len(self.text) and self._more():
                continue  # a number may go on in the next read ("12" + "3")
            self.pos = end
            return value

    def fast_object(self) -> Any:
        """The object starting at the next significant character, by the fast path the module's
        docstring describes; `value()`'s answer whenever that path cannot tell."""
        if self.skip_whitespace() != "{":
            return self.value()
        start = self.pos
        line_start = self.text.rfind("\n", 0, start) + 1
        indent = self.text[line_start:start]
        if line_start == 0 or indent.strip(" \t"):
            return self.value()  # the line's start was dropped, or text precedes the brace
        closing = "\n" + indent + "}"
        end = self.text.find(closing, start)
        if end < 0 and len(self.text) - start < READ_CHARS and self.fill():
            # Near the end of what was read: read once more (fill keeps the text from `pos`).
            start = self.pos
            end = self.text.find(closing, start)
        if end < 0:
            return self.value()
        end += len(closing)
        try:
            value = _FAST_DECODE(self.text[start:end])
        except msgspec.DecodeError:
            return self.value()
        self.pos = end
        return value

    def _more(self) -> bool:
        pending = len(self.text) - self.pos
        if pending > MAX_VALUE_CHARS:
            raise self.fail(f"a value longer than {MAX_VALUE_CHARS} characters")
        # Read at least as much again as is pending: linear even for one very large value.
        return self.fill(at_least=pending)


def _maybe_cut_short(error: json.JSONDecodeError, length: int) -> bool:
    """Whether a decoding error may come from the end of the buffer rather than the text: an
    unterminated string, or a failure within a keyword's length of the end ("tr|ue")."""
    return error.msg.startswith("Unterminated string") or length - error.pos <= CUT_SHORT_CHARS


def members(handle: TextIO) -> Iterator[tuple[str, Any]]:
    """The document's top-level members in file order: `(key, value)`, except for a `models`
    list, whose items come one by one as `("models", item)` after one `("models", ARRAY)`
    marker (so that an empty list is seen too). A document that is not an object gives one
    `("", value)`."""
    buffer = _Buffer(handle)
    if buffer.skip_whitespace() != "{":
        # Not an object: its value, for the schema to name what is wrong.
        yield "", buffer.value()
        _end(buffer)
        return
    buffer.pos += 1
    if buffer.skip_whitespace() == "}":
        buffer.pos += 1
        _end(buffer)
        return
    while True:
        if buffer.skip_whitespace() != '"':
            raise buffer.fail("Expecting property name enclosed in double quotes")
        key = buffer.value()
        buffer.expect(":", "':' delimiter")
        if key == MODELS_KEY and buffer.skip_whitespace() == "[":
            buffer.pos += 1
            yield MODELS_KEY, ARRAY
            if buffer.skip_whitespace() == "]":
                buffer.pos += 1
            else:
                while True:
                    yield MODELS_KEY, buffer.fast_object()
                    if buffer.expect(",]", "',' delimiter") == "]":
                        break
        else:
            yield key, buffer.value()
        if buffer.expect(",}", "',' delimiter") == "}":
            break
    _end(buffer)


def _end(buffer: _Buffer) -> None:
    if buffer.skip_whitespace():
        raise buffer.fail("Extra data")


def open_text(path: Path) -> TextIO:
    try:
        return path.open(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {' '.join(str(exc).split())}") from None
