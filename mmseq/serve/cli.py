"""`mmseq serve`: the flags, and uvicorn running the app."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
from collections.abc import Iterator

from mmseq.cli import add_compute_type_option, add_device_option
from mmseq.config import DEFAULT_WHISPER
from mmseq.serve.config import OPENAI_UPLOAD_MB, ServeConfig

log = logging.getLogger("mmseq.serve")


def add_serve_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    s = commands.add_parser(
        "serve",
        help="an OpenAI-compatible HTTP server: /v1/audio/transcriptions, ... (extra: serve)",
        parents=[common],
        allow_abbrev=False,
    )
    add = s.add_argument
    add("--host", default="127.0.0.1", help="(default: %(default)s)")
    add("--port", type=int, default=8000, help="(default: %(default)s)")
    add("--model", default=DEFAULT_WHISPER, help="the Whisper model, as for `mmseq transcribe`")
    add("--caption-model", default=None, metavar="CKPT", help="serve /v1/images/captions")
    add("--text-model", default=None, metavar="DIR|CKPT", help="serve /v1/text/generations")
    add_device_option(add)
    add_compute_type_option(add, "weights' precision")
    add(
        "--max-upload-mb",
        type=float,
        default=OPENAI_UPLOAD_MB,
        help="MiB of request body at most, counted as it arrives; more: 413 (default: "
        "%(default)s, OpenAI's)",
    )
    add("--max-audio-seconds", type=float, default=None, help="refuse longer recordings (400)")
    add(
        "--max-queue",
        type=int,
        default=64,
        help="requests waiting per model; more: 429 with Retry-After (default: %(default)s)",
    )
    add("--batch-size", type=int, default=8, help="requests decoded together (default: 8)")
    add("--api-key", default=None, help="require `Authorization: Bearer KEY` on /v1 routes")
    defaults = ServeConfig()
    add(
        "--timeout",
        type=float,
        default=defaults.timeout_s,
        metavar="SECONDS",
        help="a transcription's time budget: this many seconds (default: %(default)s) ...",
    )
    add(
        "--timeout-per-audio-second",
        type=float,
        default=defaults.timeout_per_audio_s,
        metavar="SECONDS",
        help="... plus this many per second of audio (default: %(default)s); past it: 504",
    )
    s.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from mmseq.precision import check_device
        from mmseq.serve.app import create_app

        draining_server = _server_class()
    except ImportError as err:
        raise ValueError(
            f"mmseq serve needs the serve extra ({err.name} is missing): pip install 'mmseq[serve]'"
        ) from None
    args.device = check_device(args.device, args.compute_type)  # before the server starts
    config = ServeConfig(
        model=args.model,
        caption_model=args.caption_model,
        text_model=args.text_model,
        device=args.device,
        compute_type=args.compute_type,
        max_upload_mb=args.max_upload_mb,
        max_audio_seconds=args.max_audio_seconds,
        max_queue=args.max_queue,
        batch_size=args.batch_size,
        api_key=args.api_key,
        timeout_s=args.timeout,
        timeout_per_audio_s=args.timeout_per_audio_second,
    )
    log.info(
        "mmseq serve: http://%s:%d (models load in the background: see /ready)",
        args.host,
        args.port,
    )
    server = draining_server(
        uvicorn.Config(create_app(config), host=args.host, port=args.port, log_level="info")
    )
    server.run()
    return 0


def _server_class():  # noqa: ANN202 - uvicorn is imported only when serving
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, except that SIGTERM ends it with status 0 once the requests in
        flight are answered: uvicorn (>= 0.29) raises the signal again after its graceful
        shutdown, and a process killed by SIGTERM reads as a failure to supervisors."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:  # runs before uvicorn raises the captured signals again
                    self._captured_signals = [
                        s for s in self._captured_signals if s != signal.SIGTERM
                    ]

    return DrainingServer
