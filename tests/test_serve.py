"""`mmseq serve` driven by the real OpenAI Python client: a uvicorn server on a free port,
tiny.en (embedded) on the bundled clips; fault cases over raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from mmseq.inference import Caption  # noqa: E402
from mmseq.serve.app import create_app  # noqa: E402
from mmseq.serve.config import ServeConfig  # noqa: E402
from mmseq.serve.speech import SpeechJob, SpeechModel  # noqa: E402
from mmseq.serve.textgen import CaptionModel, TextModel  # noqa: E402
from mmseq.text.generator import Generated  # noqa: E402
from mmseq.transcription import TranscribeOptions, Transcriber  # noqa: E402

CLIPS = sorted((Path(__file__).resolve().parents[1] / "mmseq/assets/clips").glob("*.flac"))
CLIP = CLIPS[2]  # the shortest, 3.6 s
KEY = "test-key"
LIMIT_MB = 1

pytestmark = pytest.mark.usefixtures("one_thread")  # beside other jobs on a small CPU


@contextlib.contextmanager
def serving(app) -> Iterator[str]:  # noqa: ANN001
    """Run `app` with uvicorn on a free port until ready; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/ready", timeout=5):
                break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    else:
        raise AssertionError("the server did not get ready")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber("tiny.en")


@pytest.fixture(scope="module")
def base(transcriber: Transcriber) -> Iterator[str]:
    config = ServeConfig(max_upload_mb=LIMIT_MB, max_audio_seconds=4.0, api_key=KEY)
    with serving(create_app(config, speech=SpeechModel(transcriber, "tiny.en"))) as url:
        yield url


@pytest.fixture(scope="module")
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def reference(transcriber: Transcriber) -> dict:
    """What `mmseq transcribe` gives on CLIP: its defaults, and with --word-timestamps."""
    plain = transcriber.transcribe(CLIP)
    words = transcriber.transcribe(CLIP, word_timestamps=True)
    return {"plain": plain, "words": words}


def _create(client: openai.OpenAI, **kwargs: object):  # noqa: ANN202
    return client.audio.transcriptions.create(model="whisper-1", file=CLIP, **kwargs)


GRANULARITIES = [None, ["segment"], ["word"], ["word", "segment"]]


@pytest.mark.parametrize("granularities", GRANULARITIES, ids=str)
@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_every_format_and_granularity(client, reference, fmt, granularities) -> None:  # noqa: ANN001
    extra = {} if granularities is None else {"timestamp_granularities": granularities}
    words = granularities is not None and "word" in granularities
    if words and fmt != "verbose_json":  # OpenAI: word timestamps need verbose_json
        with pytest.raises(openai.BadRequestError) as err:
            _create(client, response_format=fmt, **extra)
        assert err.value.param == "timestamp_granularities"
        return
    result = _create(client, response_format=fmt, **extra)
    expected = reference["words" if words else "plain"]
    if fmt == "json":
        assert result.text == expected.text
        assert result.usage.type == "duration" and result.usage.seconds == 4
    elif fmt == "text":
        assert result == expected.text + "\n"
    elif fmt in ("srt", "vtt"):
        assert expected.segments[0].text.strip() in result
        assert ("WEBVTT" in result) == (fmt == "vtt") and "-->" in result
    else:
        body = result.model_dump(exclude_unset=True)
        assert body["task"] == "transcribe" and body["language"] == "english"
        assert body["text"] == expected.text and body["duration"] == pytest.approx(3.573, 1e-3)
        assert body["usage"] == {"type": "duration", "seconds": 4}
        assert ("words" in body) == words
        assert ("segments" in body) == (granularities != ["word"])
        if "segments" in body:
            keys = "id seek start end text tokens temperature avg_logprob compression_ratio"
            assert set(body["segments"][0]) == {*keys.split(), "no_speech_prob"}
            assert [s["text"] for s in body["segments"]] == [s.text for s in expected.segments]
        if words:
            expected_words = [w.word.strip() for s in expected.segments for w in s.words]
            assert [w["word"] for w in body["words"]] == expected_words
            assert all(w["start"] <= w["end"] for w in body["words"])


def test_streaming_as_the_sdk_parses_it(client, reference) -> None:  # noqa: ANN001
    events = list(_create(client, response_format="json", stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1
    assert set(kinds[:-1]) == {"transcript.text.delta"}
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == reference["plain"].text
    with pytest.raises(openai.BadRequestError):
        _create(client, response_format="verbose_json", stream=True)


def test_chunking_auto_is_the_vad_path(client, transcriber) -> None:  # noqa: ANN001
    expected = transcriber.transcribe(CLIP, vad=True)
    assert _create(client, chunking_strategy="auto").text == expected.text
    with pytest.raises(openai.BadRequestError):
        _create(client, chunking_strategy={"type": "server_vad"})


def test_translation_with_an_english_only_model(client) -> None:  # noqa: ANN001
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.translations.create(model="whisper-1", file=CLIP)
    assert err.value.param == "model" and "English-only" in err.value.message


def test_max_audio_seconds(client) -> None:  # noqa: ANN001
    with pytest.raises(openai.BadRequestError) as err:  # 4.5 s, over the server's 4 s
        client.audio.transcriptions.create(model="whisper-1", file=CLIPS[1])
    assert err.value.code == "audio_too_long"


def test_two_hours_of_silence_is_refused_from_its_header(client, reference, tmp_path) -> None:  # noqa: ANN001
    """A 2-hour recording (silence: a 0.4 MB FLAC, under the upload limit) against
    --max-audio-seconds: 400 audio_too_long at once, from the header, before any decoding;
    the server keeps serving."""
    import numpy as np
    import soundfile as sf

    path = tmp_path / "two_hours.flac"
    with sf.SoundFile(path, "w", 16000, 1, format="FLAC") as f:
        block = np.zeros(16000 * 60, np.int16)
        for _ in range(120):
            f.write(block)
    assert path.stat().st_size < LIMIT_MB * 1024 * 1024
    started = time.monotonic()
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=path)
    assert err.value.code == "audio_too_long" and "7200.0 s long" in err.value.message
    assert time.monotonic() - started < 30  # not decoded
    assert _create(client).text == reference["plain"].text


def test_the_server_imports_no_lightning() -> None:
    code = "import sys, mmseq.serve.app; assert 'lightning' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_language_the_model_lacks(client) -> None:  # noqa: ANN001
    with pytest.raises(openai.BadRequestError) as err:
        _create(client, language="de")
    assert err.value.param == "language"


def test_models_and_unknown_ones(client) -> None:  # noqa: ANN001
    assert {m.id for m in client.models.list()} == {"tiny.en", "whisper-1"}
    assert client.models.retrieve("tiny.en").owned_by == "mmseq"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")
    with pytest.raises(openai.NotFoundError) as err:
        client.audio.transcriptions.create(model="gpt-9", file=CLIP)
    assert err.value.code == "model_not_found"


def test_api_key(base: str) -> None:
    wrong = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with urllib.request.urlopen(base + "/health") as response:  # open without a key
        assert json.load(response) == {"status": "ok"}


def test_bad_uploads_get_4xx_and_the_server_keeps_serving(client, base, reference) -> None:  # noqa: ANN001
    cases = [("empty.wav", b"", "empty_file"), ("notes.wav", b"not audio " * 100, None)]
    for name, data, code in cases:
        with pytest.raises(openai.BadRequestError) as err:
            client.audio.transcriptions.create(model="whisper-1", file=(name, data))
        assert err.value.param == "file"
        assert code is None or err.value.code == code
    big = b"\0" * (LIMIT_MB * 1024 * 1024 + 1000)  # true Content-Length over the limit
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", big))
    assert err.value.status_code == 413 and "Maximum content size limit" in err.value.message
    assert _chunked_upload(base, big) == 413  # no Content-Length at all
    # a Content-Length below the body's size: only that much is read, a cut multipart body
    assert _raw(base, b"--x\r\nContent-Disposition: form-data", declared=12) == 400
    assert _raw(base, b"--x\r\nthis is not multipart\r\n--x--\r\n") == 400
    assert _raw(base, b'{"file": 1}', content_type="application/json") == 415
    assert _create(client).text == reference["plain"].text  # still serving


def test_a_lying_content_length_is_counted(transcriber: Transcriber) -> None:
    """At the ASGI level, where a body can outgrow its declared length: 413 all the same."""
    app = create_app(ServeConfig(model=None, max_upload_mb=1))
    head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    body = [head] + [b"x" * 65536] * 32  # 2 MiB of a file, declared as 100 bytes
    messages = [{"type": "http.request", "body": b, "more_body": True} for b in body]
    messages[-1]["more_body"] = False
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"100")]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/audio/transcriptions",
        "raw_path": b"/v1/audio/transcriptions",
        "query_string": b"",
        "headers": headers,
        "app": app,
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["message"].startswith("Maximum content size")


@pytest.mark.parametrize("vad", [False, True], ids=["windows", "vad"])
def test_alone_or_batched_the_same(transcriber: Transcriber, vad: bool) -> None:
    speech = SpeechModel(transcriber, "tiny.en")
    jobs = [SpeechJob(str(p), TranscribeOptions(vad=vad)) for p in CLIPS[:3]]
    batched = speech.run_batch(jobs)
    for job, together in zip(jobs, batched, strict=True):
        alone = speech.run_batch([job])[0]
        assert together.text == alone.text and together.text_tokens == alone.text_tokens
        assert [s.start for s in together.segments] == [s.start for s in alone.segments]


def test_concurrent_requests(client, reference) -> None:  # noqa: ANN001
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(_create(client).text)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [reference["plain"].text] * 3


def test_ready_and_metrics(base: str, client) -> None:  # noqa: ANN001
    _create(client)
    with urllib.request.urlopen(base + "/ready") as response:
        assert json.load(response) == {"status": "ready"}
    with urllib.request.urlopen(base + "/metrics") as response:
        text = response.read().decode()
    assert 'mmseq_requests_total{route="/v1/audio/transcriptions",status="200"}' in text
    assert "mmseq_audio_seconds_total" in text and "mmseq_batch_size_bucket" in text
    assert 'mmseq_queue_depth{model="tiny.en"}' in text


class _BlockingSpeech(SpeechModel):
    """tiny.en that holds each step (a window of every request in flight) until released: a
    full queue, or a client that leaves mid-request, on demand."""

    def __init__(self, *args) -> None:  # noqa: ANN002
        super().__init__(*args)
        self.release, self.entered = threading.Event(), threading.Event()
        self.fail = False  # then every step fails, as a decoder that broke
        self.steps = 0

    def live(self, options):  # noqa: ANN001, ANN201
        live = super().live(options)
        step = live.iter_step

        def held():  # noqa: ANN202
            self.entered.set()
            self.release.wait(60)
            self.steps += 1
            if self.fail:
                raise RuntimeError("decoder broke")
            yield from step()

        live.iter_step = held
        return live


class _UpperText:
    """A stand-in TextGenerator: upper-cases each input; records the batches it gets."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def results(self, texts, batch_size=32, **options):  # noqa: ANN001, ANN201
        self.calls.append(list(texts))
        return [Generated(t.upper(), [], 0.0) for t in texts]


class _Captions:
    def caption(self, paths, batch_size=16):  # noqa: ANN001, ANN201
        return [Caption(str(p), caption="a red square") for p in paths]


def test_queue_full_text_and_captions(transcriber: Transcriber) -> None:
    speech = _BlockingSpeech(transcriber, "tiny.en")
    speech.release.set()  # let the warm-up through
    text = TextModel(_UpperText(), "upper")
    app = create_app(
        ServeConfig(model=None, max_queue=1, batch_size=1),
        speech=speech,
        text=text,
        caption=CaptionModel(_Captions(), "shapes"),
    )
    with serving(app) as url:
        speech.release.clear()
        speech.entered.clear()
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        worker = app.state.models.workers["speech"]
        done: list[str] = []
        first = threading.Thread(target=lambda: done.append(_create(client).text))
        first.start()
        assert speech.entered.wait(30)  # taken: decoding (held)
        second = threading.Thread(target=lambda: done.append(_create(client).text))
        second.start()
        _wait(lambda: worker.depth == 1)  # waiting in the queue
        with pytest.raises(openai.RateLimitError) as err:
            _create(client)
        assert int(err.value.response.headers["retry-after"]) >= 1
        speech.release.set()
        first.join(60)
        second.join(60)
        assert len(done) == 2 and done[0] == done[1]
        speech.fail = True
        with pytest.raises(openai.InternalServerError):
            _create(client)
        events = _create(client, stream=True)  # the status line is sent: an error event
        with pytest.raises(openai.APIError, match="internal error: RuntimeError"):
            list(events)

        status, body = _post_json(url, {"input": ["a", "b c"], "max_new_tokens": 5})
        assert status == 200 and [d["text"] for d in body["data"]] == ["A", "B C"]
        status, body = _post_json(url, {"input": "x", "num_beams": 0})
        assert status == 422 and body["error"]["param"] == "num_beams"
        caption = client.post(
            "/images/captions",
            cast_to=object,
            body={"model": "shapes"},
            files=[("file", ("x.png", b"png"))],
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
        assert caption == {"text": "a red square"}


def _wait(condition, seconds: float = 30) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _post_json(base: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        base + "/v1/text/generations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def _raw(
    base: str,
    body: bytes,
    declared: int | None = None,
    content_type: str = "multipart/form-data; boundary=x",
) -> int:
    """POST `body` to the transcriptions route with this Content-Length; the status."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        head = (
            "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if declared is None else declared}\r\n"
            "Connection: close\r\n\r\n"
        )
        s.sendall(head.encode() + body)
        reply = s.recv(65536).decode("latin-1")
    return int(reply.split()[1])


def _chunked_upload(base: str, data: bytes) -> int:
    """A multipart upload sent chunked, without Content-Length; the status."""
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    chunks = [head, *(data[i : i + 65536] for i in range(0, len(data), 65536)), tail]
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=60)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Authorization": f"Bearer {KEY}",
    }
    connection.request(
        "POST", "/v1/audio/transcriptions", body=iter(chunks), headers=headers, encode_chunked=True
    )
    status = connection.getresponse().status
    connection.close()
    return status


def test_worker_batches_what_is_queued() -> None:
    from mmseq.serve.workers import BatchWorker, QueueFull

    started, release, batches = threading.Event(), threading.Event(), []

    def run_batch(jobs):  # noqa: ANN001, ANN202
        batches.append(list(jobs))
        started.set()
        release.wait(30)
        return [ValueError("odd") if j % 2 else j * 10 for j in jobs]

    worker = BatchWorker("w", run_batch, batch_size=3, max_queue=4)
    futures = [worker.submit(0)]
    started.wait(30)
    futures += [worker.submit(j) for j in range(1, 5)]  # queued behind the first batch
    with pytest.raises(QueueFull):
        worker.submit(5)
    release.set()
    assert futures[0].result(30) == 0 and futures[2].result(30) == 20
    with pytest.raises(ValueError, match="odd"):
        futures[1].result(30)  # one job's error, not the batch's
    worker.close(30)
    assert batches == [[0], [1, 2, 3], [4]]


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five clips, each followed by 12 s of silence, twice: about 160 s, six windows."""
    import numpy as np
    import soundfile as sf

    from mmseq.data.audio import load_audio

    silence = np.zeros(12 * 16000, np.float32)
    parts = [part for clip in CLIPS for part in (load_audio(clip), silence)] * 2
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path


def test_a_short_request_joins_a_long_one_between_windows(
    transcriber: Transcriber, long_recording: Path
) -> None:
    """A clip sent while a long recording is being transcribed joins it at the next window
    and is answered long before the recording is done; both transcripts are their own
    alone (no token changes with what a request is batched with)."""
    from mmseq.serve.speech import SpeechWorker

    speech = SpeechModel(transcriber, "tiny.en")
    sizes: list[int] = []
    short_future: list = []
    options = TranscribeOptions()

    def on_batch(size: int, seconds: float) -> None:
        sizes.append(size)
        if len(sizes) == 1:  # the long one is one window in: send the clip
            short_future.append(worker.submit(SpeechJob(str(CLIP), options)))

    worker = SpeechWorker(speech, batch_size=4, max_queue=4, on_batch=on_batch)
    long_future = worker.submit(SpeechJob(str(long_recording), options))
    _wait(lambda: bool(short_future), 120)
    short = short_future[0].result(120)
    assert not long_future.done()  # the clip did not wait for the recording
    long = long_future.result(300)
    worker.close(30)
    assert sizes[0] == 1 and sizes[1] == 2 and sizes[-1] == 1  # joined, then left
    assert len(sizes) >= 5
    for result, path in ((short, CLIP), (long, long_recording)):
        alone = transcriber.transcribe(path, options=options)
        assert result.text_tokens == alone.text_tokens and result.text
        assert [s.start for s in result.segments] == [s.start for s in alone.segments]


def test_a_client_that_leaves_frees_its_slot(
    transcriber: Transcriber, long_recording: Path
) -> None:
    """A client that disconnects mid-transcription: its request is dropped at the next
    window (not transcribed to the end), counted as 499, and the server keeps serving."""
    speech = _BlockingSpeech(transcriber, "tiny.en")
    speech.release.set()
    app = create_app(ServeConfig(model=None, batch_size=1), speech=speech)
    with serving(app) as url:
        speech.release.clear()
        worker = app.state.models.workers["speech"]
        host, port = url.removeprefix("http://").split(":")
        body, boundary = _multipart(long_recording)
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
                + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            assert speech.entered.wait(60)  # its first window is being decoded (held)
        _wait(lambda: _cancelled(worker))  # the server saw the client go
        speech.release.set()
        _wait(lambda: worker.in_flight == 0)
        assert speech.steps == 1  # dropped after one of its six windows
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        assert _create(client).text
        with urllib.request.urlopen(url + "/metrics") as response:
            metrics = response.read().decode()
    assert 'route="/v1/audio/transcriptions",status="499"' in metrics


def test_a_request_past_its_time_budget_is_504(
    transcriber: Transcriber, long_recording: Path
) -> None:
    """The budget (timeout_s + timeout_per_audio_s x duration) runs out after a window: 504 in
    OpenAI's envelope, and the server keeps serving."""
    config = ServeConfig(model=None, timeout_s=0.01, timeout_per_audio_s=0.0)
    with serving(create_app(config, speech=SpeechModel(transcriber, "tiny.en"))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        with pytest.raises(openai.InternalServerError) as err:
            client.audio.transcriptions.create(model="whisper-1", file=long_recording)
        assert err.value.status_code == 504
        assert err.value.body["code"] == "timeout"
        assert "time budget" in err.value.body["message"]
    with pytest.raises(ValueError, match="timeout"):
        ServeConfig(timeout_s=0)


def _cancelled(worker) -> bool:  # noqa: ANN001
    return any(item.future.cancelled() for item in list(worker._owners.values()))


def _multipart(path: Path) -> tuple[bytes, str]:
    boundary = "mmseqboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, boundary


def test_sigterm_finishes_the_requests_in_flight(
    transcriber: Transcriber, long_recording: Path
) -> None:
    """`mmseq serve` sent SIGTERM while it transcribes a long recording: the request gets its
    full transcript, then the server exits 0."""
    import signal

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(Path(sys.executable).parent / "mmseq"), "serve", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _status(url + "/ready") == 200, 120)
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300)
        texts: list[str] = []
        request = threading.Thread(
            target=lambda: texts.append(
                client.audio.transcriptions.create(model="whisper-1", file=long_recording).text
            )
        )
        request.start()
        step_done = 'mmseq_batch_seconds_count{model="tiny.en"}'
        _wait(lambda: step_done in _metrics(url), 120)  # its first window is decoded
        server.send_signal(signal.SIGTERM)
        request.join(300)
        assert server.wait(120) == 0, server.stderr.read().decode()[-2000:]
    finally:
        server.kill()
    assert texts == [transcriber.transcribe(long_recording).text]  # all of it


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return response.read().decode()


def test_a_request_temperature_falls_back_as_openai_whisper() -> None:
    from mmseq.serve.audio import _temperatures
    from mmseq.transcription import TranscribeOptions

    assert _temperatures(None) == _temperatures("0") == TranscribeOptions().temperatures
    assert _temperatures("0.3") == (0.3, 0.5, 0.7, 0.9)
    assert _temperatures("1") == (1.0,)
