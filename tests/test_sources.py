"""Frame sources against real data (../shared/data) and real local HTTP servers; no Django, no database."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from detection.sources import Backoff, SourceEnded, SourceError, _CaptureStream, open_source, redact_uri

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VIDEO = DATA / "video" / "pets09_s2l1_view001_frames301-795.mp4"  # 480x360, 10 fps, 495 frames
PETS_IMAGES = DATA / "pets09_s2l1" / "images"
GRAYSCALE_IMAGE = DATA / "shanghaitech_a" / "images" / "IMG_113.jpg"


@pytest.fixture(scope="module")
def data() -> Path:
    if not VIDEO.is_file() or not PETS_IMAGES.is_dir():
        pytest.skip(f"shared evaluation data not found at {DATA} (expected as the repository's sibling ../shared)")
    return DATA


# --- video files ---------------------------------------------------------------------------------------------------


def test_video_advances_in_simulated_time_and_ends(data: Path) -> None:
    source = open_source(str(VIDEO), interval=1.0)  # 1 s at 10 fps = 10 frames per read
    try:
        frames = [source.read() for _ in range(50)]
        assert [f.index for f in frames] == list(range(0, 500, 10))
        assert frames[3].position == "frame 30"
        assert frames[0].image.shape == (360, 480, 3) and frames[0].image.dtype == np.uint8
        with pytest.raises(SourceEnded):
            source.read()  # frame 500 does not exist
    finally:
        source.close()


def test_video_frames_are_the_frames_at_those_indexes(data: Path) -> None:
    cap = cv2.VideoCapture(str(VIDEO))
    expected = [cap.read()[1] for _ in range(21)]
    cap.release()
    source = open_source(str(VIDEO), interval=1.0)
    try:
        for index in (0, 10, 20):
            assert np.array_equal(source.read().image, expected[index])
    finally:
        source.close()


def test_video_steps_at_least_one_frame_for_tiny_intervals(data: Path) -> None:
    source = open_source(str(VIDEO), interval=0.01)
    try:
        assert [source.read().index for _ in range(3)] == [0, 1, 2]
    finally:
        source.close()


def test_looping_video_wraps_to_the_first_frame(data: Path) -> None:
    source = open_source(f"file://{VIDEO}?loop=1", interval=1.0)
    try:
        indexes = [source.read().index for _ in range(52)]
        assert indexes[48:] == [480, 490, 0, 10]
    finally:
        source.close()


# --- images, folders, globs ----------------------------------------------------------------------------------------


def test_image_folder_cycles_through_all_images_in_name_order(data: Path) -> None:
    names = sorted(p.name for p in PETS_IMAGES.iterdir() if p.suffix == ".jpg")
    source = open_source(str(PETS_IMAGES))
    frames = [source.read() for _ in range(len(names) + 1)]
    assert [f.position for f in frames] == [*names, names[0]]
    assert [f.index for f in frames] == [*range(len(names)), 0]
    assert frames[0].image.shape == (576, 768, 3)


def test_glob_pattern_selects_matching_images_in_order(data: Path) -> None:
    pattern = f"{PETS_IMAGES}/00000*.jpg"
    expected = sorted(p.name for p in PETS_IMAGES.glob("00000*.jpg"))
    assert len(expected) >= 2
    source = open_source(f"file://{pattern}")
    assert [source.read().position for _ in range(len(expected) + 1)] == [*expected, expected[0]]


def test_single_image_file_returns_the_same_image_every_read(data: Path) -> None:
    path = sorted(PETS_IMAGES.iterdir())[0]
    source = open_source(str(path))
    first, second = source.read(), source.read()
    assert first.position == second.position == path.name
    assert np.array_equal(first.image, second.image)


def test_grayscale_image_becomes_three_channels(data: Path) -> None:
    assert cv2.imread(str(GRAYSCALE_IMAGE), cv2.IMREAD_UNCHANGED).ndim == 2, "test image is expected to be grayscale"
    image = open_source(str(GRAYSCALE_IMAGE)).read().image
    assert image.shape == (506, 1024, 3)
    assert np.array_equal(image[..., 0], image[..., 2])


@pytest.mark.parametrize("uri", ["/no/such/place.mp4", "file:///no/such/folder"])
def test_missing_path_is_reported(uri: str) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(uri)


def test_glob_without_matches_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="No images match"):
        open_source(str(tmp_path / "*.jpg"))


def test_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(SourceError, match="contains no images"):
        open_source(str(tmp_path))


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(SourceError, match=r"broken\.jpg"):
        open_source(str(tmp_path)).read()


@pytest.mark.parametrize("uri", ["ftp://camera/x.jpg", "gopher://x"])
def test_unsupported_scheme(uri: str) -> None:
    with pytest.raises(SourceError, match="Unsupported source"):
        open_source(uri)


def test_missing_webcam_index_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="webcam 99"):
        open_source("99")


# --- live capture (the latest-frame reader over cv2.VideoCapture) --------------------------------------------------


def test_live_capture_hands_out_the_newest_frame_then_reports_the_end(data: Path) -> None:
    # A video file through the live reader decodes at full speed, far faster than we read: the reads must
    # skip ahead to the newest frame instead of walking through a backlog, and the end must become an error.
    source = _CaptureStream(str(VIDEO), "test video", timeout=5.0)
    positions = []
    try:
        with pytest.raises(SourceError, match="stopped sending frames"):
            while True:
                positions.append(source.read().position)
                time.sleep(0.2)
    finally:
        source.close()
    assert positions[-1] == "live frame 495"
    assert len(positions) < 50


# --- HTTP cameras --------------------------------------------------------------------------------------------------


@dataclass
class StreamState:
    sent: int = 0  # number of the newest part written
    closed: threading.Event = field(default_factory=threading.Event)


def _numbered(image: np.ndarray, number: int) -> np.ndarray:
    """Write `number` into the image as 16 black/white 16x16 blocks, which survive JPEG compression."""
    marked = image.copy()
    for bit in range(16):
        marked[:16, bit * 16 : (bit + 1) * 16] = 255 if number >> bit & 1 else 0
    return marked


def _number(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(16) if image[:16, bit * 16 : (bit + 1) * 16].mean() > 127)


def _with_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """Embed a JPEG thumbnail in an APP1 segment, as EXIF cameras do: it brings a second end-of-image marker."""
    return jpeg[:2] + b"\xff\xe1" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail + jpeg[2:]


class CameraHandler(BaseHTTPRequestHandler):
    server: CameraServer

    def do_GET(self) -> None:
        if self.path == "/snap.jpg":
            self.server.snapshots += 1
            self._send(200, "image/jpeg", self.server.jpegs[self.server.snapshots % 2])
        elif self.path == "/page":
            self._send(200, "text/html", b"<html><body>login required</body></html>")
        elif self.path in ("/endless.jpg", "/slow.jpg"):
            self._endless_body(
                chunk=b"\xff" * 65536 if self.path == "/endless.jpg" else b"\xff",
                pause=0.0 if self.path == "/endless.jpg" else 0.1,
            )
        elif self.path == "/text-stream":
            self._text_stream()
        elif self.path.startswith("/stream"):
            self._stream(parts=int(self.path.partition("parts=")[2] or 1_000_000))
        else:
            self.send_error(404)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, parts: int) -> None:
        state = StreamState()
        self.server.streams.append(state)
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        thumbnail = cv2.imencode(".jpg", cv2.resize(self.server.image, (64, 48)))[1].tobytes()
        try:
            for number in range(1, parts + 1):
                jpeg = cv2.imencode(".jpg", _numbered(self.server.image, number))[1].tobytes()
                jpeg = _with_thumbnail(jpeg, thumbnail)
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                self.wfile.write(head + jpeg + b"\r\n")
                state.sent = number
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            state.closed.set()

    def _endless_body(self, chunk: bytes, pause: float) -> None:
        """A snapshot answer whose body never ends (no Content-Length): a broken camera or a wrong URL."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        try:
            while True:
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _text_stream(self) -> None:
        """A multipart stream whose parts are not JPEGs (a misconfigured camera): no frame ever completes."""
        state = StreamState()
        self.server.streams.append(state)
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"--frame\r\nContent-Type: text/plain\r\n\r\n" + b"status ok " * 100 + b"\r\n")
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            state.closed.set()

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


class CameraServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, image: np.ndarray, other: np.ndarray) -> None:
        super().__init__(("127.0.0.1", 0), CameraHandler)
        self.image = image
        self.jpegs = [cv2.imencode(".jpg", image)[1].tobytes(), cv2.imencode(".jpg", other)[1].tobytes()]
        self.snapshots = 0
        self.streams: list[StreamState] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def camera(data: Path) -> Iterator[CameraServer]:
    images = sorted(PETS_IMAGES.iterdir())
    image = cv2.resize(cv2.imread(str(images[0])), (384, 288))  # smaller parts keep the stream cheap to encode
    server = CameraServer(image, cv2.imread(str(images[1])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_snapshot_fetches_a_fresh_image_every_read(camera: CameraServer) -> None:
    source = open_source(f"{camera.url}/snap.jpg")
    shapes = {source.read().image.shape, source.read().image.shape}
    # The server alternates between two differently sized images, so two fresh fetches see both.
    assert shapes == {(288, 384, 3), (576, 768, 3)}


def test_http_404_is_a_source_error(camera: CameraServer) -> None:
    with pytest.raises(SourceError, match="HTTP 404"):
        open_source(f"{camera.url}/missing.jpg")


def test_http_body_that_is_not_an_image_is_a_source_error(camera: CameraServer) -> None:
    with pytest.raises(SourceError, match=r"did not return an image \(Content-Type: text/html\)"):
        open_source(f"{camera.url}/page")


def test_http_snapshot_body_without_end_is_a_source_error(camera: CameraServer) -> None:
    # Without a bound the worker kept downloading into memory until it was killed, taking every camera with it.
    with pytest.raises(SourceError, match="sent more than"):
        open_source(f"{camera.url}/endless.jpg")


def test_http_snapshot_that_trickles_in_is_a_source_error(
    camera: CameraServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("detection.sources.HTTP_TIMEOUT", 1.0)
    started = time.monotonic()
    # Each byte arrives well within the read timeout; only a limit on the whole body ends the wait.
    with pytest.raises(SourceError, match="did not send its image within 1 s"):
        open_source(f"{camera.url}/slow.jpg")
    assert time.monotonic() - started < 5


def test_refused_http_connection_is_a_source_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(SourceError, match="Cannot reach") as error:
        open_source(f"http://127.0.0.1:{port}/snapshot.cgi?user=admin&pwd=hunter2")
    assert "hunter2" not in str(error.value)


def test_mjpeg_stream_returns_the_newest_frame(camera: CameraServer) -> None:
    source = open_source(f"{camera.url}/stream")
    try:
        first = source.read()
        assert first.image.shape == (288, 384, 3)  # the full frame, not the embedded thumbnail
        time.sleep(0.5)  # the server sends ~20 more parts meanwhile
        sent = camera.streams[-1].sent
        second = source.read()
        assert _number(second.image) > _number(first.image) + 5, "a buffered old frame was returned"
        assert _number(second.image) >= sent - 5
        assert _number(source.read().image) > _number(second.image)
    finally:
        source.close()
    assert camera.streams[-1].closed.wait(5), "closing the source must close the connection"


def test_mjpeg_stream_that_ends_is_a_source_error(camera: CameraServer) -> None:
    source = open_source(f"{camera.url}/stream?parts=3")
    try:
        time.sleep(0.3)
        assert _number(source.read().image) == 3  # newest part, not the first
        with pytest.raises(SourceError, match="closed the connection"):
            source.read()
    finally:
        source.close()


def test_closing_a_stream_that_never_sends_a_jpeg_closes_the_connection(camera: CameraServer) -> None:
    source = open_source(f"{camera.url}/text-stream")
    time.sleep(0.2)  # the reading thread is busy looking for a JPEG that never comes
    source.close()
    # Otherwise every reconnect of such a camera would leave one more thread downloading forever.
    assert camera.streams[-1].closed.wait(5), "closing the source must close the connection"


# --- passwords -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/stream", "rtsp://admin:***@10.0.0.5:554/stream"),
        ("rtsp://admin:p@ss@10.0.0.5/stream", "rtsp://admin:***@10.0.0.5/stream"),
        ("http://cam/snapshot.cgi?usr=admin&pwd=s3cret&x=1", "http://cam/snapshot.cgi?usr=admin&pwd=***&x=1"),
    ],
)
def test_redact_uri_hides_passwords(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected


@pytest.mark.parametrize("uri", ["rtsp://10.0.0.5:554/stream", "rtsp://admin@cam/x", "/data/v.mp4", "0"])
def test_redact_uri_leaves_uris_without_password_unchanged(uri: str) -> None:
    assert redact_uri(uri) == uri


def test_unreachable_rtsp_error_hides_the_password(capfd: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError) as error:
        open_source("rtsp://user:pw@127.0.0.1:1/x")
    assert time.monotonic() - started < 5
    assert "rtsp://user:***@127.0.0.1:1/x" in str(error.value)
    assert "pw" not in str(error.value)
    assert "user:pw" not in capfd.readouterr().err  # nor in what OpenCV/FFmpeg log


# --- back-off ------------------------------------------------------------------------------------------------------


def test_backoff_grows_caps_and_resets() -> None:
    backoff = Backoff(base=1.0, factor=2.0, maximum=10.0)
    assert [backoff.failed() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.succeeded()
    assert backoff.failed() == 1.0


def test_backoff_stays_capped_after_very_many_failures() -> None:
    backoff = Backoff(maximum=60.0, failures=100_000)
    assert backoff.failed() == 60.0
