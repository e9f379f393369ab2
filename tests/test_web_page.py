"""The web page of `mmseq serve` (GET /) in a real browser: Debian's chromium, driven by
selenium through Debian's chromedriver (nothing is downloaded: the driver's path is given, and
Selenium Manager is told to stay offline). The server is test_serve's: tiny.en (embedded), and
its stand-in text and caption models; with an API key, which the page asks for."""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from test_serve import KEY, _Captions, _UpperText, serving

from mmseq.serve.app import create_app
from mmseq.serve.config import ServeConfig
from mmseq.serve.speech import SpeechModel
from mmseq.serve.textgen import CaptionModel, TextModel
from mmseq.transcription import Transcriber, Transcript
from mmseq.writers import to_srt

CLIP = Path(__file__).resolve().parents[1] / "mmseq/assets/clips/clip4_en-m3.flac"
WAIT_S = 60  # for a transcript (tiny.en takes about a second on the clip)

pytestmark = pytest.mark.usefixtures("one_thread")


def _tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"`{name}` is missing: the web page's browser test needs Debian's chromium and "
            "chromium-driver; run `make sysdeps` (as root) or "
            "`sudo apt-get install chromium chromium-driver`.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber("tiny.en")


@pytest.fixture(scope="module")
def base(transcriber: Transcriber) -> Iterator[str]:
    app = create_app(
        ServeConfig(model=None, api_key=KEY),
        speech=SpeechModel(transcriber, "tiny.en"),
        text=TextModel(_UpperText(), "upper"),
        caption=CaptionModel(_Captions(), "shapes"),
    )
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    options.binary_location = _tool("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",  # the microphone allowed, and a fake one (a beep)
        "--use-fake-device-for-media-stream",
    ):
        options.add_argument(flag)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager never downloads a browser or driver
        driver = webdriver.Chrome(options=options, service=Service(_tool("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def reference(transcriber: Transcriber) -> Transcript:
    return transcriber.transcribe(CLIP)  # what `mmseq transcribe` gives


def _wait(driver: webdriver.Chrome, condition, seconds: float = WAIT_S):  # noqa: ANN001, ANN202
    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(lambda d: condition())


def _element(driver: webdriver.Chrome, element_id: str):  # noqa: ANN202
    return driver.find_element(By.ID, element_id)


def _open(driver: webdriver.Chrome, base: str) -> None:
    """The page, in a tab that holds no key yet: it asks for one, then shows the sections."""
    driver.get(base + "/")
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    key = _element(driver, "api-key")
    _wait(driver, key.is_displayed)
    assert not _element(driver, "speech").is_displayed()
    key.send_keys("wrong")
    key.submit()
    _wait(driver, lambda: "Incorrect API key" in _element(driver, "key-error").text)
    key.send_keys(KEY)
    key.submit()
    _wait(driver, lambda: _element(driver, "speech").is_displayed())
    served = _element(driver, "models").text
    assert all(name in served for name in ("tiny.en (speech)", "upper", "shapes")), served


def _settled(driver: webdriver.Chrome, section: str) -> str:
    """Waits for `section`'s request to end: its error, or '' once its status is not '…'."""
    status, error = _element(driver, f"{section}-status"), _element(driver, f"{section}-error")
    _wait(driver, lambda: error.is_displayed() or not status.text.endswith("…"))
    return error.text if error.is_displayed() else ""


def test_upload_transcript_seek_and_srt(browser, base, reference, downloads) -> None:  # noqa: ANN001
    _open(browser, base)
    _element(browser, "audio-file").send_keys(str(CLIP))
    _wait(browser, lambda: "segment" in _element(browser, "speech-status").text)
    assert _settled(browser, "speech") == ""
    buttons = browser.find_elements(By.CSS_SELECTOR, "#segments button")
    texts = [b.find_element(By.CLASS_NAME, "text").text for b in buttons]
    assert texts == [s.text.strip() for s in reference.segments]
    starts = [float(b.get_attribute("data-start")) for b in buttons]
    assert starts == pytest.approx([s.start for s in reference.segments], abs=1e-3)

    # a segment plays from its start: the player is put 2.5 s in, then the segment chosen
    player = _element(browser, "player")
    _wait(browser, lambda: browser.execute_script("return arguments[0].readyState", player) >= 1)
    browser.execute_script("arguments[0].currentTime = 2.5", player)
    buttons[0].click()
    now = browser.execute_script("return arguments[0].currentTime", player)
    assert starts[0] <= now < starts[0] + 1.0

    # SRT: asked of the server when first chosen, then saved by the browser (a blob: link)
    srt = _element(browser, "download-srt")
    srt.click()
    saved = downloads / "clip4_en-m3.srt"
    _wait(browser, saved.exists)  # written as .crdownload, then renamed: complete
    assert srt.get_attribute("href").startswith("blob:")
    assert saved.read_text(encoding="utf-8") == to_srt(reference)


def test_errors_caption_and_text(browser, base, tmp_path) -> None:  # noqa: ANN001
    _open(browser, base)
    notes = tmp_path / "notes.wav"
    notes.write_bytes(b"not audio " * 100)
    _element(browser, "audio-file").send_keys(str(notes))
    error = _settled(browser, "speech")
    assert error.startswith("Error 400: Invalid file format") and "(field: file)" in error

    image = tmp_path / "square.png"
    image.write_bytes(b"png")  # the stand-in captioner reads no pixels
    _element(browser, "image-file").send_keys(str(image))
    _wait(browser, lambda: _element(browser, "caption-text").text == "a red square")

    box = _element(browser, "text-input")
    box.send_keys("bring an umbrella")
    box.submit()
    _wait(browser, lambda: _element(browser, "text-output").text == "BRING AN UMBRELLA")


def test_a_recording_is_uploaded_and_decoded(browser, base) -> None:  # noqa: ANN001
    """MediaRecorder's WebM from chromium's fake microphone (a beep), decoded by the server."""
    _open(browser, base)
    record = _element(browser, "record")
    record.click()
    _wait(browser, lambda: record.get_attribute("aria-pressed") == "true")
    time.sleep(1.5)
    record.click()
    _wait(browser, lambda: "recording." in _element(browser, "speech-status").text)
    assert _settled(browser, "speech") == ""
    assert "recording.webm:" in _element(browser, "speech-status").text


def test_the_files_without_a_key(base: str) -> None:
    """The page and its files need no key (the API does), carry their content types and an
    ETag the browser revalidates with (304); only the page's own files are served."""
    for path, kind in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ]:
        with urllib.request.urlopen(base + path) as response:
            assert response.headers["content-type"] == f"{kind}; charset=utf-8"
            assert response.headers["cache-control"] == "no-cache"
            etag = response.headers["etag"]
        request = urllib.request.Request(base + path, headers={"If-None-Match": etag})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request)
        assert err.value.code == 304
    for path, status in [
        ("/static/web.py", 404),
        ("/static/..%2Fweb.py", 404),
        ("/v1/models", 401),
    ]:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + path)
        assert err.value.code == status, path
