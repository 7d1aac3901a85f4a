"""Content-hash keys for warehouse rows.

Every id column (`run_id`, `task_id`, `trajectory_id`, ...) is a content key:
a hash of the values that make the row *logically* what it is. The same
logical row therefore always gets the same key, and because the writer skips
keys that already exist, a re-run after a crash writes nothing twice.

Callers choose the parts; they should be the row's identity, not its payload
that may vary between re-runs (timestamps, latencies). Start with a short tag
naming the kind of row so that two tables never share a key by accident:

    task_id = content_key("task", run_id, iteration, slot)
    trajectory_id = content_key("trajectory", task_id, "solver", checkpoint, sample_index)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_HEX_CHARS = 32  # 128 bits: collisions are not a concern at any realistic row count


def canonical_json(value: Any) -> str:
    """Serialise `value` so that equal values give equal text.

    Dict keys are sorted and whitespace is fixed; tuples serialise as lists.
    NaN and infinities are refused because JSON cannot spell them portably.
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as err:
        raise ValueError(f"cannot build a content key from a NaN or infinite float: {err}") from err
    except TypeError as err:
        raise TypeError(
            "content key parts must be JSON values "
            f"(str, int, float, bool, None, list, dict): {err}"
        ) from err


def content_key(*parts: Any) -> str:
    """Return the first 32 hex chars of sha256 over the canonical JSON of `parts`.

    Order of `parts` matters; key order inside dicts does not.
    """
    if not parts:
        raise ValueError("content_key needs at least one part")
    digest = hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()
    return digest[:KEY_HEX_CHARS]
