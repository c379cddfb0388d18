"""``jinav3 serve``: a self-hosted jina-embeddings-v3 server that Jina and OpenAI clients use unchanged.

    jinav3 serve --model jinaai/jina-embeddings-v3 --port 8080
    python -m jinav3.integrations.server --model ./jina-embeddings-v3

    from jinav3.integrations.server import create_app
    uvicorn.run(create_app(encoder))

Modules: app (routes, model lifecycle), tei (text-embeddings-inference's routes), admission (what
every embedding route shares: 429s, running a plan), schemas (the two request dialects), validation
(every check), tokens (token counts, token-id inputs), batcher (the scheduler that owns the model),
formats (response encodings), errors (the error shapes), guard (API key, body limit, metrics per
route), metrics (Prometheus), environment (JINAV3_<FLAG> settings), ray_serve (replicas on Ray Serve:
``jinav3 serve --ray``, ``build_app``). The command line's ``jinav3 serve`` is ``jinav3.integrations.cli.serve``.

``create_app`` and ``Limits`` need fastapi, uvicorn and prometheus-client, and say how to install them.
"""

from __future__ import annotations

from jinav3.errors import install_hint

__all__ = ["create_app", "Limits"]


def __getattr__(name: str) -> object:
    if name in ("create_app", "Limits"):
        try:
            from . import app
        except ImportError as error:
            raise ImportError(f"jinav3's server needs fastapi, uvicorn and prometheus-client: {install_hint('server')} "
                              f"({error})") from error
        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
