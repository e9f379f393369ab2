"""POST /v1/audio/transcriptions and /v1/audio/translations, as OpenAI's API takes them.

The request's options become the `TranscribeOptions` that `mmseq transcribe` would use with
the matching flags (prompt: --initial-prompt; temperature T > 0: --temperature T, retried 0.2
hotter up to 1.0 as openai-whisper's fallback; word granularity: --word-timestamps;
chunking_strategy auto: --vad), so the text is the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from mmseq.config import fallback_temperatures
from mmseq.serve.errors import APIError, ClientDisconnected, bad_request, internal_error
from mmseq.serve.formats import (
    GRANULARITIES,
    RESPONSE_FORMATS,
    as_json,
    as_text,
    as_verbose_json,
    sse,
    stream_events,
)
from mmseq.serve.models import ServedModels, result_or_disconnect
from mmseq.serve.speech import AudioError, RequestTimeout, SpeechJob, SpeechModel
from mmseq.serve.uploads import field, read_form, save, upload
from mmseq.transcription import TranscribeOptions, Transcript

router = APIRouter()
TRANSLATION_FIELDS = {"file", "model", "prompt", "response_format", "temperature"}
TRANSCRIPTION_FIELDS = TRANSLATION_FIELDS | {
    "language",
    "stream",
    "timestamp_granularities[]",
    "timestamp_granularities",
    "chunking_strategy",
}


@dataclass(frozen=True)
class AudioRequest:
    model: str | None
    response_format: str
    granularities: tuple[str, ...]
    stream: bool
    options: TranscribeOptions


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request) -> Response:
    return await _handle(request, "transcribe")


@router.post("/v1/audio/translations")
async def translations(request: Request) -> Response:
    return await _handle(request, "translate")


async def _handle(request: Request, task: str) -> Response:
    served: ServedModels = request.app.state.models
    form = await read_form(request)
    parsed = parse_request(form, task)
    speech: SpeechModel = served.resolve(parsed.model, "speech")
    _check_model(speech, parsed.options)
    path = await run_in_threadpool(save, upload(form))
    try:
        duration = await run_in_threadpool(_probe, speech, path)
        limit = served.config.max_audio_seconds
        if limit is not None and duration > limit:
            raise bad_request(
                f"The audio is {duration:.1f} s long; this server takes at most {limit:g} s.",
                param="file",
                code="audio_too_long",
            )
        deadline = time.monotonic() + served.config.time_budget(duration)
        future = served.submit("speech", SpeechJob(path, parsed.options, deadline))
    except BaseException:
        os.unlink(path)
        raise
    if parsed.stream:  # Starlette cancels the stream's task when the client leaves
        return StreamingResponse(_events(future, path, served), media_type="text/event-stream")
    try:
        transcript = await _result(future, request)
    finally:
        os.unlink(path)
    served.metrics.audio_seconds.inc(transcript.duration)
    return _response(transcript, parsed, task)


def parse_request(form: FormData, task: str) -> AudioRequest:
    """The OpenAI fields of a transcription or translation request; 400 naming the field."""
    response_format = field(form, "response_format", "json")
    if response_format not in RESPONSE_FORMATS:
        raise bad_request(
            f"Invalid response_format {response_format!r}: expected one of "
            f"{', '.join(RESPONSE_FORMATS)}.",
            param="response_format",
        )
    granularities = _granularities(form, response_format)
    stream = _boolean(field(form, "stream", "false"), "stream")
    language = field(form, "language") or None
    allowed = TRANSLATION_FIELDS if task == "translate" else TRANSCRIPTION_FIELDS
    for name in form:
        if name not in allowed:  # OpenAI's words; an option not served is not dropped
            raise bad_request(f"Unrecognized request argument supplied: {name}", param=name)
    if stream and response_format not in ("json", "text"):
        raise bad_request(
            f"stream: not with response_format {response_format!r} (the events carry the "
            "text only); use json or text.",
            param="stream",
        )
    try:
        options = TranscribeOptions(
            initial_prompt=field(form, "prompt") or None,
            temperatures=_temperatures(field(form, "temperature")),
            word_timestamps="word" in granularities,
            language=language,
            task=task,
            vad=_chunking(field(form, "chunking_strategy")),
        )
    except ValueError as err:
        raise bad_request(str(err)) from None
    return AudioRequest(field(form, "model"), response_format, granularities, stream, options)


def _granularities(form: FormData, response_format: str) -> tuple[str, ...]:
    """timestamp_granularities[] (repeated; the SDK's name) or timestamp_granularities."""
    values = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    for value in values:
        if value not in GRANULARITIES:
            raise bad_request(
                f"Invalid timestamp granularity {value!r}: expected word or segment.",
                param="timestamp_granularities",
            )
    if "word" in values and response_format != "verbose_json":
        raise bad_request(
            "timestamp_granularities: word timestamps need response_format verbose_json.",
            param="timestamp_granularities",
        )
    return tuple(dict.fromkeys(values))


def _temperatures(text: str | None) -> tuple[float, ...]:
    """None or 0: openai-whisper's fallback 0, 0.2, ... 1.0; T: T, T+0.2, ... up to 1.0."""
    if text is None or text == "":
        return TranscribeOptions().temperatures
    try:
        value = float(text)
    except ValueError:
        raise bad_request(f"Invalid temperature {text!r}: a number.", param="temperature") from None
    if not 0 <= value <= 1:
        raise bad_request(f"temperature {value}: expected 0 to 1.", param="temperature")
    if value == 0:
        return TranscribeOptions().temperatures
    return fallback_temperatures(value)


def _chunking(value: str | None) -> bool:
    """OpenAI's chunking_strategy "auto" (cut at voice activity): `mmseq transcribe --vad`."""
    if value in (None, ""):
        return False
    if value == "auto":
        return True
    raise bad_request(
        f"chunking_strategy {value!r}: only 'auto' (Silero voice activity, as `mmseq "
        "transcribe --vad`) is served.",
        param="chunking_strategy",
    )


def _boolean(text: str | None, name: str) -> bool:
    lowered = (text or "").strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise bad_request(f"Invalid {name} {text!r}: true or false.", param=name)


def _check_model(speech: SpeechModel, options: TranscribeOptions) -> None:
    if options.task == "translate" and not speech.multilingual:
        raise bad_request(
            f"The model `{speech.name}` is English-only and cannot translate; serve a "
            "multilingual Whisper checkpoint (whisper-tiny, -base, ...) for translations.",
            param="model",
            code="unsupported_task",
        )
    try:
        speech.check(options)
    except (ValueError, KeyError) as err:
        raise bad_request(str(err).strip("'\""), param="language") from None


def _probe(speech: SpeechModel, path: str) -> float:
    try:
        return speech.probe(path)
    except AudioError as err:
        raise bad_request(
            "Invalid file format: the file could not be decoded as audio "
            f"({_without_path(str(err), path)}).",
            param="file",
            code="invalid_file_format",
        ) from None


async def _result(future: Future, request: Request | None = None) -> Transcript:
    try:
        return await result_or_disconnect(future, request)
    except AudioError as err:
        raise bad_request(
            f"The audio could not be decoded ({err}).", param="file", code="invalid_file_format"
        ) from None
    except RequestTimeout as err:
        raise APIError(504, f"{err}; retry with a shorter file.", code="timeout") from None
    except ClientDisconnected:
        raise
    except Exception as err:
        raise internal_error(err) from err


def _without_path(message: str, path: str) -> str:
    """Error messages name the temporary file: say 'file' instead."""
    return message.replace(f"{path}: ", "").replace(path, "file")


def _response(t: Transcript, parsed: AudioRequest, task: str) -> Response:
    fmt = parsed.response_format
    if fmt == "json":
        return JSONResponse(as_json(t))
    if fmt == "verbose_json":
        return JSONResponse(as_verbose_json(t, task, parsed.granularities))
    return PlainTextResponse(as_text(t, fmt))


async def _events(future: Future, path: str, served: ServedModels) -> AsyncIterator[bytes]:
    """The SSE stream; an error once the stream has begun is an error event (which the SDK
    raises as APIError)."""
    try:
        transcript = await _result(future)
    except APIError as err:
        yield sse(err.body())
        return
    finally:
        os.unlink(path)
    served.metrics.audio_seconds.inc(transcript.duration)
    for event in stream_events(transcript):
        yield event
