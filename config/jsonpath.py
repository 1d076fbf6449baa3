"""A small, strict JSON path dialect for meter value and group-by properties.

Supported: ``$.a.b``, ``$['a b'].c`` and ``$.items[0]`` (object keys and
array indexes). Anything else is a configuration error, found at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_MISSING = object()
_DOT_KEY = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)")
_QUOTED_KEY = re.compile(r"\[(?:'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\")\]")
_INDEX = re.compile(r"\[(\d+)\]")


class JsonPathError(ValueError):
    """The path text is not in the supported dialect."""


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled path: a tuple of object keys (str) and array indexes (int)."""

    text: str
    steps: tuple[str | int, ...]

    def find(self, document: Any) -> Any:
        """Return the value at this path, or ``MISSING`` when any step is absent."""
        steps = self.steps
        # Most meter paths are one key deep ($.tokens): one dict lookup.
        if len(steps) == 1 and type(steps[0]) is str and type(document) is dict:
            return document.get(steps[0], _MISSING)
        node = document
        for step in self.steps:
            if isinstance(step, str):
                if not isinstance(node, dict):
                    return _MISSING
                node = node.get(step, _MISSING)
            else:
                if not isinstance(node, list) or step >= len(node):
                    return _MISSING
                node = node[step]
            if node is _MISSING:
                return _MISSING
        return node


MISSING: Any = _MISSING


def compile_path(text: str) -> JsonPath:
    """Compile ``text`` (which must start with ``$``) or raise JsonPathError."""
    if not text.startswith("$"):
        raise JsonPathError(f"JSON path {text!r} must start with '$', for example '$.tokens'")
    steps: list[str | int] = []
    pos = 1
    while pos < len(text):
        for pattern in (_DOT_KEY, _QUOTED_KEY, _INDEX):
            match = pattern.match(text, pos)
            if match is None:
                continue
            if pattern is _INDEX:
                steps.append(int(match.group(1)))
            elif pattern is _QUOTED_KEY:
                raw = match.group(1) if match.group(1) is not None else match.group(2)
                steps.append(re.sub(r"\\(.)", r"\1", raw))
            else:
                steps.append(match.group(1))
            pos = match.end()
            break
        else:
            raise JsonPathError(
                f"JSON path {text!r}: cannot read {text[pos:]!r} at position {pos}; "
                "use '.key', \"['key with spaces']\" or '[index]'"
            )
    if not steps:
        raise JsonPathError(f"JSON path {text!r} selects the whole data object; name a property")
    return JsonPath(text=text, steps=tuple(steps))
