"""The served models, each behind its own worker thread, and whether they are ready."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any

from starlette.requests import Request

from mmseq.serve.config import ServeConfig
from mmseq.serve.errors import APIError, ClientDisconnected, internal_error
from mmseq.serve.metrics import Metrics
from mmseq.serve.speech import SpeechModel, SpeechWorker
from mmseq.serve.textgen import CaptionModel, TextModel
from mmseq.serve.workers import BatchWorker, QueuedWorker, QueueFull

log = logging.getLogger("mmseq.serve")

WHISPER_ALIAS = "whisper-1"  # the name OpenAI clients send: served by the speech model


async def result_or_disconnect(future: Future, request: Request | None = None) -> Any:
    """The worker's result for `future`. If `request`'s client disconnects first, the future
    is cancelled (the worker drops the job at its next step) and ClientDisconnected raised.
    Without a request, only cancelling the awaiting task cancels the job."""
    waiter = asyncio.wrap_future(future)  # cancelling it cancels `future`
    if request is None:
        return await waiter
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({waiter, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if waiter.done():
        return waiter.result()
    waiter.cancel()
    raise ClientDisconnected("the client disconnected")


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the request body is read by then: the next ASGI
    message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class ServedModels:
    """Loads the models of `config` (those not given already), warms them up and starts one
    worker per model; `ready` once all of that is done, `error` if it failed."""

    def __init__(
        self,
        config: ServeConfig,
        metrics: Metrics,
        speech: SpeechModel | None = None,
        text: TextModel | None = None,
        caption: CaptionModel | None = None,
    ) -> None:
        self.config, self.metrics = config, metrics
        self.speech, self.text, self.caption = speech, text, caption
        self.workers: dict[str, QueuedWorker] = {}
        self.ready = threading.Event()
        self.error: str | None = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._load, name="mmseq-load", daemon=True)
        thread.start()
        return thread

    def _load(self) -> None:
        c = self.config
        try:
            if self.speech is None and c.model:
                self.speech = SpeechModel.load(c.model, c.device, c.compute_type)
            if self.text is None and c.text_model:
                self.text = TextModel.load(c.text_model, c.device, c.compute_type)
            if self.caption is None and c.caption_model:
                self.caption = CaptionModel.load(c.caption_model, c.device)
            for kind, model in self.by_kind().items():
                model.warmup()
                hooks = self.metrics.worker_hooks(model.name)
                if kind == "speech":
                    worker = SpeechWorker(model, c.batch_size, c.max_queue, **hooks)
                else:
                    worker = BatchWorker(
                        model.name, model.run_batch, c.batch_size, c.max_queue, **hooks
                    )
                self.workers[kind] = worker
        except Exception as err:  # noqa: BLE001 - reported by /ready and the log
            self.error = f"{type(err).__name__}: {err}"
            log.exception("mmseq serve: loading the models failed")
            return
        self.ready.set()
        log.info("mmseq serve: ready (%s)", ", ".join(m.name for m in self.by_kind().values()))

    def by_kind(self) -> dict[str, Any]:
        found = {"speech": self.speech, "text": self.text, "caption": self.caption}
        return {kind: model for kind, model in found.items() if model is not None}

    def ids(self) -> list[tuple[str, str]]:
        """(model id, kind) of every served model, with OpenAI's whisper-1 for the speech one."""
        ids = [(m.name, kind) for kind, m in self.by_kind().items()]
        if self.speech is not None and self.speech.name != WHISPER_ALIAS:
            ids.append((WHISPER_ALIAS, "speech"))
        return ids

    def resolve(self, model_id: str | None, kind: str) -> Any:
        """The model of `kind` that `model_id` names; 404 (OpenAI's model_not_found) if none,
        503 while loading."""
        if not self.ready.is_set():
            raise APIError(503, self.error or "the models are loading; retry shortly")
        model = self.by_kind().get(kind)
        names = (None, "", WHISPER_ALIAS) if kind == "speech" else (None, "")
        if model is not None and (model_id == model.name or model_id in names):
            return model
        served = ", ".join(name for name, k in self.ids() if k == kind) or "none"
        raise APIError(
            404,
            f"The model `{model_id}` does not exist or is not served here for this endpoint "
            f"(served: {served}).",
            param="model",
            code="model_not_found",
        )

    async def run(self, kind: str, job: Any, request: Request | None = None) -> Any:
        """Queue `job` for the model of `kind` and wait for its result; 429 when its queue is
        full, 500 when the model fails (ValueError, a bad input, is left to the caller). The
        job is dropped if the caller is cancelled, or `request`'s client leaves, before its
        result is set."""
        future = self.submit(kind, job)
        try:
            return await result_or_disconnect(future, request)
        except (APIError, ValueError, ClientDisconnected):
            raise
        except Exception as err:
            raise internal_error(err) from err

    def submit(self, kind: str, job: Any) -> Any:
        try:
            return self.workers[kind].submit(job)
        except QueueFull as err:
            raise APIError(
                429,
                str(err),
                code="rate_limit_exceeded",
                headers={"Retry-After": str(err.retry_after)},
            ) from None

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close(timeout=30)
