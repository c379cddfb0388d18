"""The embedding signature a collection records: model identity, size, metric, tasks on each side.

Recorded with the collection when it is made and compared whenever it is opened, so vectors of other
embeddings are never mixed in or searched with.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinav3.errors import SignatureMismatchError, StoreError
from jinav3.identity import same_model

log = logging.getLogger("jinav3.integrations")

SIGNATURE_VERSION = 1
METRIC = "cosine"


@dataclass(frozen=True)
class Signature:
    """What the vectors in a collection are: model, size, metric and the tasks on each side.

    ``model`` is the model's identity (``jinav3.identity``: a hub id, or a local folder's recorded name
    or content fingerprint), so the same weights match however their folder is spelled;
    ``model_label`` is a readable name shown beside it (never compared).
    """

    model: str
    dimensions: int
    passage_task: str
    query_task: str
    metric: str = METRIC
    version: int = SIGNATURE_VERSION
    model_label: str | None = field(default=None, compare=False)
    hybrid: bool = False  # a lexical (BM25) vector beside each dense one (integrations/hybrid.py)

    def to_dict(self) -> dict[str, Any]:
        out = {"model": self.model, "dimensions": self.dimensions, "passage_task": self.passage_task,
               "query_task": self.query_task, "metric": self.metric, "version": self.version}
        if self.model_label is not None and self.model_label != self.model:
            out["model_label"] = self.model_label
        if self.hybrid:  # left out when False: signatures written before hybrid collections read the same
            out["hybrid"] = True
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Signature":
        try:
            label = data.get("model_label")
            return cls(str(data["model"]), int(data["dimensions"]), str(data["passage_task"]),
                       str(data["query_task"]), str(data.get("metric", METRIC)), int(data.get("version", 1)),
                       None if label is None else str(label), bool(data.get("hybrid", False)))
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"unreadable jinav3 signature {dict(data)!r}: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "Signature":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise StoreError(f"unreadable jinav3 signature {text!r}: {e}") from None

    @property
    def shown_model(self) -> str:
        """``model`` with its readable label, for messages."""
        if self.model_label and self.model_label != self.model:
            return f"{self.model} ({self.model_label})"
        return self.model

    def differences(self, other: "Signature") -> list[str]:
        """``["dimensions: collection 64, encoder 32", ...]`` for every field that differs (self = stored).
        The model is compared by identity (:func:`jinav3.identity.same_model`), so a signature written
        before identities, holding the folder as it was typed, still matches the same weights."""
        out = []
        if not same_model(self.model, other.model):
            out.append(f"model: it has {self.shown_model!r}, this store uses {other.shown_model!r}")
        for name in ("dimensions", "passage_task", "query_task", "metric", "hybrid"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name}: it has {a!r}, this store uses {b!r}")
        return out


def check_signature(where: str, expected: Signature, *, size: int | None, metric: str | None,
                    stored: Signature | None) -> None:
    """Refuse to open ``where`` when its vector size, metric or recorded signature differs."""
    problems = []
    if size is not None and int(size) != expected.dimensions:
        problems.append(f"vector size: it has {int(size)}, this store's encoder gives "
                        f"{expected.dimensions} (dimensions={expected.dimensions})")
    if metric is not None and metric.lower() != expected.metric:
        problems.append(f"metric: it uses {metric!r}, jinav3 needs {expected.metric!r}")
    if stored is not None:
        problems += [p for p in stored.differences(expected)
                     if not (size is not None and p.startswith("dimensions"))
                     and not (metric is not None and p.startswith("metric"))]
    if problems:
        raise SignatureMismatchError(
            f"{where} was made for other embeddings, so nothing was written: " + "; ".join(problems)
            + ". Open it with the same model, dimensions and tasks, or use another collection.")
    if stored is None:
        log.warning("%s records no jinav3 signature (made by another tool?); only its size and metric were checked",
                    where)
