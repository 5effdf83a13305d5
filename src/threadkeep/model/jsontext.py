"""JSON text, as threadkeep writes it: compact UTF-8, via orjson.

Every append serialises its JSON columns and its change-log rows (the row
itself, message text included), so this is on the hottest path there is;
orjson does it several times faster than the standard library. Values are
checked by model/text.py before they get here (no NaN, no integers beyond
64 bits, string keys only), so the two encoders agree on everything we store.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON."""
    return len(orjson.dumps(value))
