"""`mmseq serve`: an OpenAI-compatible HTTP service for the speech, captioning and text models.

Modules, one job each: `app` (the FastAPI factory), `audio` and `generation` (routes),
`formats` (OpenAI's response shapes), `errors` (OpenAI's error envelope), `limits` (API key,
upload size), `uploads` (multipart reading), `workers` (a thread and a bounded queue per
model, batching), `speech` and `textgen` (the models' batch functions), `metrics`
(Prometheus), `config` and `cli`. Needs the `serve` extra (FastAPI, uvicorn).
"""

from mmseq.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> object:  # FastAPI loads only when the app is made
    if name == "create_app":
        from mmseq.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'mmseq.serve' has no attribute {name!r}")
