"""The five task adapters of jina-embeddings-v3, and which one each operation uses.

This is the one place that knows task names, their adapter folder names (peft refuses a "." in an
adapter name), their instruction prefixes, and that written text is a passage while searched text
is a query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from typing import overload

from .errors import invalid

RETRIEVAL_QUERY = "retrieval.query"
RETRIEVAL_PASSAGE = "retrieval.passage"
SEPARATION = "separation"
CLASSIFICATION = "classification"
TEXT_MATCHING = "text-matching"

# Order matters: it is the task index of the original checkpoint (`lora_adaptations`).
TASKS: tuple[str, ...] = (RETRIEVAL_QUERY, RETRIEVAL_PASSAGE, SEPARATION, CLASSIFICATION, TEXT_MATCHING)
DEFAULT_TASK = TEXT_MATCHING  # as in the Jina API

# What the real model's config.json says; a checkpoint's own `task_instructions` wins over these.
DEFAULT_INSTRUCTIONS: dict[str, str] = {
    RETRIEVAL_QUERY: "Represent the query for retrieving evidence documents: ",
    RETRIEVAL_PASSAGE: "Represent the document for retrieval: ",
    SEPARATION: "",
    CLASSIFICATION: "",
    TEXT_MATCHING: "",
}

# Index time embeds passages, search time embeds queries. Every store and framework adapter asks here.
INDEX_TASK = RETRIEVAL_PASSAGE
SEARCH_TASK = RETRIEVAL_QUERY


def adapter_name(task: str) -> str:
    """The peft adapter (and sub-folder) name of a task: ``retrieval.query`` -> ``retrieval_query``."""
    return check_task(task).replace(".", "_").replace("-", "_")


@overload
def check_task(task: str, argument: str = "task") -> str: ...
@overload
def check_task(task: str | None, argument: str = "task") -> str | None: ...
def check_task(task: str | None, argument: str = "task") -> str | None:
    """Return ``task`` if it is one of the five names or None; raise a clear error otherwise."""
    if task is None or (isinstance(task, str) and task in TASKS):
        return task
    problem = f"unknown task {task!r}" if isinstance(task, str) else f"must be a task name (str) or None, got {task!r}"
    raise invalid(argument, f"{problem}; use one of {', '.join(TASKS)} (or None for no adapter)")


def tasks_for(task: str | None | Sequence[str | None], n: int) -> list[str | None]:
    """Expand ``task`` to one task per text: a single name applies to all, a list must have length n."""
    if task is None or isinstance(task, str):
        return [check_task(task)] * n
    # Anything else must be an ordered list of names; a number would fail as "not iterable" in list().
    if isinstance(task, (bytes, bytearray, Mapping, Set)) or not isinstance(task, Iterable):
        raise invalid("task", f"must be a task name, None, or a list with one task per text, got {task!r}; "
                              f"use one of {', '.join(TASKS)}")
    tasks = list(task)
    if len(tasks) != n:
        raise invalid("task", f"a list of tasks needs one task per text: got {len(tasks)} tasks for {n} texts")
    return [check_task(t, f"task[{i}]") for i, t in enumerate(tasks)]


def index_task(override: str | None = None) -> str:
    """The task for text being written to a store (``retrieval.passage`` unless overridden)."""
    return check_task(override, "passage_task") if override is not None else INDEX_TASK


def search_task(override: str | None = None) -> str:
    """The task for text being searched with (``retrieval.query`` unless overridden)."""
    return check_task(override, "query_task") if override is not None else SEARCH_TASK
