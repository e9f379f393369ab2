"""Reading a multipart request: its fields, and its file saved to a temporary path.

The body's size was already bounded by the gate (mmseq.serve.limits) while it streamed in;
the file's name and declared type are not trusted: what it holds is probed when decoded.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect

from mmseq.serve.errors import APIError, bad_request

MAX_FIELDS = 32


async def read_form(request: Request) -> FormData:
    """The multipart form of a request; 415 for another content type, 400 if malformed."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise APIError(
            415,
            f"Unsupported content type {content_type or '(none)'!r}: send multipart/form-data "
            "with the file in the `file` field.",
            code="unsupported_media_type",
        )
    try:
        return await request.form(max_files=1, max_fields=MAX_FIELDS)
    except ClientDisconnect:
        raise bad_request("the client disconnected while sending the request") from None


def field(form: FormData, name: str, default: str | None = None) -> str | None:
    value = form.get(name)
    if value is None:
        return default
    if isinstance(value, UploadFile):
        raise bad_request(f"`{name}` must be a form field, not a file", param=name)
    return value


def upload(form: FormData, name: str = "file") -> UploadFile:
    value = form.get(name)
    if not isinstance(value, UploadFile):
        raise bad_request(
            f"Missing the `{name}` file: send it as a multipart file field.", param=name
        )
    return value


def save(file: UploadFile, name: str = "file") -> str:
    """The upload copied to a temporary file, whose path the caller removes; 400 if it is
    empty. The suffix of its name is kept (letters and digits only): some decoders go by it."""
    suffix = os.path.splitext(file.filename or "")[1]
    suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
    handle, path = tempfile.mkstemp(prefix="mmseq-serve-", suffix=suffix)
    with os.fdopen(handle, "wb") as out:
        file.file.seek(0)
        shutil.copyfileobj(file.file, out)
        size = out.tell()
    if size == 0:
        os.unlink(path)
        raise bad_request("The uploaded file is empty.", param=name, code="empty_file")
    return path
