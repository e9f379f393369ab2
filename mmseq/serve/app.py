"""The FastAPI application of `mmseq serve`: routes, middleware, models started with it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from mmseq import __version__
from mmseq.serve import audio, generation, web
from mmseq.serve.config import ServeConfig
from mmseq.serve.errors import APIError, install_handlers
from mmseq.serve.limits import GateMiddleware
from mmseq.serve.metrics import Metrics, MetricsMiddleware
from mmseq.serve.models import ServedModels
from mmseq.serve.speech import SpeechModel
from mmseq.serve.textgen import CaptionModel, TextModel


def create_app(
    config: ServeConfig | None = None,
    speech: SpeechModel | None = None,
    text: TextModel | None = None,
    caption: CaptionModel | None = None,
) -> FastAPI:
    """The app; models given here are served as they are, the others of `config` are loaded
    when the app starts (in a thread: /health answers at once, /ready once they are warm)."""
    config = config or ServeConfig()
    metrics = Metrics()
    models = ServedModels(config, metrics, speech, text, caption)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models.start()
        yield
        models.close()

    app = FastAPI(title="mmseq", version=__version__, lifespan=lifespan)
    app.state.models = models
    app.state.started = int(time.time())
    install_handlers(app)
    app.include_router(audio.router)
    app.include_router(generation.router)
    app.include_router(web.router)  # the page at /
    _add_service_routes(app, models, metrics)
    # outermost first: metrics see every answer, the gate's refusals included
    app.add_middleware(
        GateMiddleware, max_upload_bytes=config.max_upload_bytes, api_key=config.api_key
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _add_service_routes(app: FastAPI, models: ServedModels, metrics: Metrics) -> None:
    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if models.ready.is_set():
            return JSONResponse({"status": "ready"})
        if models.error:
            return APIError(503, f"loading the models failed: {models.error}").response()
        return APIError(503, "the models are loading").response()

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict:
        created = request.app.state.started
        return {"object": "list", "data": [_model(i, k, created) for i, k in models.ids()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> dict:
        kinds = dict(models.ids())
        if model_id not in kinds:
            raise APIError(
                404,
                f"The model `{model_id}` does not exist.",
                param="model",
                code="model_not_found",
            )
        return _model(model_id, kinds[model_id], request.app.state.started)


def _model(model_id: str, kind: str, created: int) -> dict:
    """OpenAI's model object, and what the model serves (kind: speech, text or caption)."""
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "mmseq",
        "kind": kind,
    }
