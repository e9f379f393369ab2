"""POST /v1/text/generations (JSON) and /v1/images/captions (multipart image)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from mmseq.serve.errors import bad_request
from mmseq.serve.models import ServedModels
from mmseq.serve.textgen import TextJob
from mmseq.serve.uploads import field, read_form, save, upload

router = APIRouter()
MAX_INPUTS = 256  # texts in one request


class TextGenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an option not served is refused, not dropped

    model: str | None = None
    input: str | list[str]
    max_new_tokens: int | None = Field(default=None, ge=1)
    num_beams: int | None = Field(default=None, ge=1)


@router.post("/v1/text/generations")
async def text_generations(body: TextGenerationRequest, request: Request) -> dict:
    """{"object": "list", "model", "data": [{"object": "text.generation", "index", "text",
    "truncated"}]}: one entry per input, in order."""
    served: ServedModels = request.app.state.models
    model = served.resolve(body.model, "text")
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts or len(texts) > MAX_INPUTS:
        raise bad_request(f"input: expected 1 to {MAX_INPUTS} texts, got {len(texts)}", "input")
    job = TextJob(tuple(texts), body.max_new_tokens, body.num_beams)
    try:
        results = await served.run("text", job, request)
    except ValueError as err:
        raise bad_request(str(err)) from None
    data = [
        {"object": "text.generation", "index": i, "text": r.text, "truncated": r.truncated}
        for i, r in enumerate(results)
    ]
    return {"object": "list", "model": model.name, "data": data}


@router.post("/v1/images/captions")
async def image_captions(request: Request) -> dict:
    """multipart `file` (an image) and `model` -> {"text": caption}."""
    served: ServedModels = request.app.state.models
    form = await read_form(request)
    served.resolve(field(form, "model"), "caption")
    path = await run_in_threadpool(save, upload(form))
    try:
        caption = await served.run("caption", path, request)
    except ValueError as err:
        message = str(err).replace(path, "file")
        raise bad_request(f"The image could not be read ({message}).", "file") from None
    finally:
        os.unlink(path)
    return {"text": caption}
