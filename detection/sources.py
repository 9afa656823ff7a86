"""Frame sources: turn a camera URI (RTSP, HTTP MJPEG/snapshot, video file, image folder/glob, webcam) into frames.

Pure Python + OpenCV so the detection worker, benchmarks and tests can use it without Django.
`open_source(uri)` picks the kind from the URI; every source has `read() -> Frame` and `close()`.
Live sources always hand out the newest frame; video files advance in simulated time (see `_VideoFile`).
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np
import requests
import urllib3

from crowd_monitor.redaction import redact_uri, scrub

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp"})
HTTP_TIMEOUT = 10.0  # seconds for connecting to and reading from HTTP cameras
LIVE_TIMEOUT = 10.0  # seconds read() waits for a new frame from a live source
MAX_JPEG_BYTES = 16 * 1024 * 1024  # an MJPEG part larger than this means the stream is not JPEG frames
_GLOB_CHARS = re.compile(r"[*?\[]")


class SourceError(Exception):
    """The source cannot be opened or read; the message says why (passwords already redacted)."""


class SourceEnded(SourceError):
    """A finite source (video file, non-looping) has no more frames."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR uint8 HxWx3
    position: str  # human-readable origin, e.g. "frame 120" or the image file name
    index: int | None = None  # frame index for video files, image index for image sets, else None


class FrameSource(Protocol):
    def read(self) -> Frame: ...

    def close(self) -> None: ...


@dataclass
class Backoff:
    """Reconnect delays: base, base*factor, base*factor**2, ... capped at maximum; reset on success."""

    base: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    failures: int = 0

    def failed(self) -> float:
        """Record a failure and return how long to wait before the next try."""
        self.failures += 1
        try:
            delay = self.base * self.factor ** (self.failures - 1)
        except OverflowError:  # a camera that has been down for days must not crash the worker
            return self.maximum
        return min(delay, self.maximum)

    def succeeded(self) -> None:
        self.failures = 0


def open_source(uri: str, *, interval: float = 5.0) -> FrameSource:
    """Open a frame source; `interval` is the sampling period, used to advance video files in simulated time."""
    if uri.isascii() and uri.isdigit():
        return _CaptureStream(int(uri), f"webcam {uri}")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in LIVE_SCHEMES:
        return _CaptureStream(uri, f"stream {redact_uri(uri)}")
    if scheme in ("http", "https"):
        return _open_http(uri)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"Unsupported source {redact_uri(uri)}: file URIs must be file:///absolute/path")
        loop = parse_qs(parts.query).get("loop", [""])[-1].lower() in ("1", "true", "yes")
        return _open_path(unquote(parts.path), interval=interval, loop=loop)
    if scheme == "":
        return _open_path(uri, interval=interval, loop=False)
    raise SourceError(f"Unsupported source {redact_uri(uri)}")


# --- files ---------------------------------------------------------------------------------------------------------


def _open_path(path: str, *, interval: float, loop: bool) -> FrameSource:
    target = Path(path)
    if target.is_dir():
        images = sorted((p for p in target.iterdir() if _is_image_file(p)), key=lambda p: p.name)
        if not images:
            raise SourceError(f"Folder {path} contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return _ImageSet([str(p) for p in images])
    if target.is_file():
        if target.suffix.lower() in IMAGE_EXTENSIONS:
            return _ImageFile(path)
        return _VideoFile(path, interval=interval, loop=loop)
    # Checked after existence so that a real file with "[" in its name still opens as itself.
    if _GLOB_CHARS.search(path):
        matches = sorted(m for m in glob.glob(path) if _is_image_file(Path(m)))
        if not matches:
            raise SourceError(f"No images match {path}")
        return _ImageSet(matches)
    raise SourceError(f"{path} does not exist")


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def _imread(path: str) -> np.ndarray:
    # IMREAD_COLOR always yields 3-channel 8-bit BGR: grayscale is expanded, alpha dropped, 16-bit scaled down.
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"Cannot read image {path}")
    return image


class _ImageFile:
    """One still image. Re-read on every read(), so a file that another program keeps overwriting acts as a camera."""

    def __init__(self, path: str) -> None:
        self._path = path

    def read(self) -> Frame:
        return Frame(_imread(self._path), os.path.basename(self._path))

    def close(self) -> None:
        pass


class _ImageSet:
    """Images in a fixed order, cycling forever, like a camera that keeps showing the same scenes."""

    def __init__(self, paths: list[str]) -> None:
        self._paths = paths
        self._next = 0

    def read(self) -> Frame:
        index = self._next
        # Advance before reading so that one unreadable file cannot stall the cycle.
        self._next = (index + 1) % len(self._paths)
        path = self._paths[index]
        return Frame(_imread(path), os.path.basename(path), index)

    def close(self) -> None:
        pass


class _VideoFile:
    """A video file played in simulated time: read k returns frame k*round(interval*fps), without sleeping.

    That makes a recorded clip behave like a live camera sampled every `interval` seconds, but
    deterministically and as fast as the caller can process frames.
    """

    def __init__(self, path: str, *, interval: float, loop: bool) -> None:
        self._path = path
        self._loop = loop
        self._cap = self._open()
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        # Containers without a usable frame rate report 0 or NaN (NaN > 0 is False): then step one frame per read.
        self._step = max(1, round(interval * fps)) if fps > 0 else 1
        self._next = 0  # index the next read() returns
        self._decoder_at = 0  # index of the frame the decoder yields next

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self._path, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"Cannot open {self._path} as an image or video")
        return cap

    def read(self) -> Frame:
        # grab() skips frames without converting them to BGR, which is most of the cost of reading.
        while self._decoder_at < self._next:
            if not self._cap.grab():
                return self._ended()
            self._decoder_at += 1
        ok, image = self._cap.read()
        if not ok:
            return self._ended()
        index = self._next
        self._decoder_at = index + 1
        self._next = index + self._step
        return Frame(image, f"frame {index}", index)

    def _ended(self) -> Frame:
        if not self._loop:
            raise SourceEnded(f"{self._path} has no more frames")
        if self._next == 0:  # nothing decodable even at the start: looping would spin forever
            raise SourceError(f"{self._path} contains no readable frames")
        # Reopening is more reliable than seeking to 0, which some codecs/containers get wrong.
        self._cap.release()
        self._cap = self._open()
        self._next = self._decoder_at = 0
        return self.read()

    def close(self) -> None:
        self._cap.release()


# --- live sources --------------------------------------------------------------------------------------------------


class _LiveSource:
    """Hands out only the newest frame of a live source.

    Cameras and network stacks buffer frames; a worker that samples every few seconds would otherwise get
    frames that are seconds or minutes old. A daemon thread pulls frames as fast as they arrive and keeps
    only the last; read() waits for one newer than the last it returned. Subclasses implement `_pull`
    (block for the next frame's payload, cheaply), `_decode` (payload -> image, None if corrupt) and `_release`.
    The thread owns the underlying connection: only it touches it, and it releases it when it stops.
    """

    live = True  # a picture that never changes means the camera is stuck (the worker's frozen check)

    def __init__(self, uri: str, shown: str, timeout: float = LIVE_TIMEOUT) -> None:
        self._uri = uri
        self._shown = shown
        self._timeout = timeout
        self._changed = threading.Condition()
        self._latest: Any = None
        self._received = 0  # frames pulled so far
        self._returned = 0  # value of _received when read() last returned a frame
        self._error: str | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"frames from {shown}", daemon=True)

    def _pull(self) -> Any:
        raise NotImplementedError

    def _decode(self, payload: Any) -> np.ndarray | None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                payload = self._pull()
                with self._changed:
                    self._latest = payload
                    self._received += 1
                    self._changed.notify_all()
        except Exception as exc:  # noqa: BLE001 - any failure must reach read(), not kill the thread silently
            message = str(exc) if isinstance(exc, SourceError) else f"{self._shown} failed: {type(exc).__name__}: {exc}"
            with self._changed:
                self._error = scrub(message, self._uri)
                self._changed.notify_all()
        finally:
            self._release()

    def read(self) -> Frame:
        deadline = time.monotonic() + self._timeout
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._received > self._returned or self._error is not None or self._stopped.is_set(),
                    timeout=max(0.0, deadline - time.monotonic()),
                )
                if self._stopped.is_set():
                    raise SourceError(f"{self._shown} is closed")
                if self._received > self._returned:
                    payload, number = self._latest, self._received
                    self._returned = number
                elif self._error is not None:
                    raise SourceError(self._error)
                else:
                    raise SourceError(f"No new frame from {self._shown} within {self._timeout:g} s")
            image = self._decode(payload)
            if image is not None:
                return Frame(image, f"live frame {number}")
            # A corrupt frame in a live stream is transient: wait for the next one until the deadline.

    def close(self) -> None:
        with self._changed:
            self._stopped.set()
            self._changed.notify_all()
        # Bounded: a stalled stream may block the thread in a read for up to its timeout; it exits on its own.
        self._thread.join(timeout=1.0)


class _CaptureStream(_LiveSource):
    """RTSP/RTMP (or any FFmpeg URL) or a webcam index, through cv2.VideoCapture."""

    def __init__(self, target: str | int, shown: str, timeout: float = LIVE_TIMEOUT) -> None:
        super().__init__(str(target), shown, timeout)
        if isinstance(target, int):
            cap = cv2.VideoCapture(target)
        else:
            # FFmpeg's RTSP default is UDP, which loses packets (smeared frames) across NATs and Wi-Fi.
            # The variable is read on every open; an operator's own setting wins.
            if urlsplit(target).scheme.lower() in ("rtsp", "rtsps"):
                os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
            millis = int(timeout * 1000)
            cap = cv2.VideoCapture(
                target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, millis, cv2.CAP_PROP_READ_TIMEOUT_MSEC, millis]
            )
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"Cannot open {shown} (unreachable, wrong address or credentials, or unsupported format)")
        self._cap = cap
        self._thread.start()

    def _pull(self) -> np.ndarray:
        # read() decodes every frame; H.264/H.265 must decode them all anyway to decode the next one.
        ok, image = self._cap.read()
        if not ok:
            raise SourceError(f"{self._shown} stopped sending frames")
        return image

    def _decode(self, payload: np.ndarray) -> np.ndarray:
        return payload

    def _release(self) -> None:
        self._cap.release()


# --- HTTP ----------------------------------------------------------------------------------------------------------


def _http_get(uri: str) -> requests.Response:
    try:
        response = requests.get(uri, timeout=HTTP_TIMEOUT, stream=True)  # the body is read by the caller, bounded
    except requests.RequestException as exc:
        # "from None": the chained exception's message carries the URL, query-string credentials included.
        raise SourceError(f"Cannot reach {redact_uri(uri)}: {scrub(str(exc), uri)}") from None
    if not 200 <= response.status_code < 300:
        response.close()
        raise SourceError(f"{redact_uri(uri)} answered HTTP {response.status_code} {response.reason}")
    return response


def _read_image_body(response: requests.Response, uri: str) -> bytes:
    """The body of a snapshot answer, refused once it passes MAX_JPEG_BYTES or takes more than HTTP_TIMEOUT in all.

    `requests` bounds each read, not the whole body: a server that streams without end (or a byte at a time)
    would otherwise hold the sampling thread forever, or fill memory until the worker is killed. read1 returns
    whatever has arrived, so the clock is checked even while bytes trickle in (iter_content waits for a full chunk).
    """
    deadline = time.monotonic() + HTTP_TIMEOUT
    body = bytearray()
    with response:
        try:
            while chunk := response.raw.read1(65536, decode_content=True):
                body += chunk
                if len(body) > MAX_JPEG_BYTES:
                    raise SourceError(f"{redact_uri(uri)} sent more than {MAX_JPEG_BYTES} bytes: not a snapshot image")
                if time.monotonic() > deadline:
                    raise SourceError(f"{redact_uri(uri)} did not send its image within {HTTP_TIMEOUT:g} s")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SourceError(f"Cannot read {redact_uri(uri)}: {scrub(str(exc), uri)}") from None
    return bytes(body)


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _open_http(uri: str) -> FrameSource:
    """One GET decides: a multipart answer is an MJPEG stream, a decodable body is a snapshot URL."""
    response = _http_get(uri)
    content_type = response.headers.get("Content-Type", "")
    if content_type.lower().startswith("multipart/"):
        return _MjpegStream(uri, response)
    body = _read_image_body(response, uri)
    # Judged by decoding rather than by Content-Type: many cameras label snapshots application/octet-stream.
    image = _decode_jpeg(body)
    if image is None:
        raise SourceError(f"{redact_uri(uri)} did not return an image (Content-Type: {content_type or 'none'})")
    return _Snapshot(uri, first=image)


class _Snapshot:
    """A camera snapshot URL, fetched only when a frame is wanted: every read() fetches a fresh image.

    The image fetched while opening (to tell a snapshot from a stream) is the first read()'s, if it is still
    fresh, so opening and sampling a snapshot camera costs one request, not two.
    """

    live = True
    FIRST_FRESH_SECONDS = 1.0

    def __init__(self, uri: str, first: np.ndarray | None = None) -> None:
        self._uri = uri
        self._count = 0
        self._first = first
        self._first_at = time.monotonic()

    def read(self) -> Frame:
        first, self._first = self._first, None
        if first is not None and time.monotonic() - self._first_at < self.FIRST_FRESH_SECONDS:
            self._count += 1
            return Frame(first, f"snapshot {self._count}")
        image = _decode_jpeg(_read_image_body(_http_get(self._uri), self._uri))
        if image is None:
            raise SourceError(f"{redact_uri(self._uri)} returned a body that is not an image")
        self._count += 1
        return Frame(image, f"snapshot {self._count}")

    def close(self) -> None:
        pass


class _MjpegStream(_LiveSource):
    """multipart/x-mixed-replace JPEG stream, split into JPEGs by their own markers.

    JPEG structure is used rather than the multipart boundary because cameras often declare the boundary
    inconsistently (with or without the leading "--"). Frames are decoded only when read() asks for one.
    """

    def __init__(self, uri: str, response: requests.Response) -> None:
        super().__init__(uri, f"MJPEG stream {redact_uri(uri)}")
        self._response = response
        self._buffer = bytearray()
        self._thread.start()

    def _pull(self) -> bytes:
        while (jpeg := self._take_jpeg()) is None:
            # Checked per chunk, not only per frame: a stream that never completes a JPEG would otherwise keep
            # this thread and its connection alive forever after close().
            if self._stopped.is_set():
                raise SourceError(f"{self._shown} is closed")
            if len(self._buffer) > MAX_JPEG_BYTES:
                raise SourceError(f"{self._shown} does not contain JPEG frames")
            # read1 returns whatever has arrived; read(n) would hold a complete frame back until n bytes came.
            chunk = self._response.raw.read1(65536)
            if not chunk:
                raise SourceError(f"{self._shown} closed the connection")
            self._buffer += chunk
        return jpeg

    def _take_jpeg(self) -> bytes | None:
        start = self._buffer.find(b"\xff\xd8")
        if start < 0:
            del self._buffer[:-1]  # keep a trailing 0xFF: it may be the first half of the next start marker
            return None
        end = _jpeg_end(self._buffer, start)
        if end is None:
            del self._buffer[:start]
            return None
        jpeg = bytes(self._buffer[start:end])
        del self._buffer[:end]
        return jpeg

    def _decode(self, payload: bytes) -> np.ndarray | None:
        return _decode_jpeg(payload)

    def _release(self) -> None:
        self._response.close()


def _jpeg_end(data: bytearray, start: int) -> int | None:
    """Offset just past the JPEG that starts at `start`, or None if it is not complete yet.

    The header segments are skipped by their lengths before looking for the end marker, because an EXIF
    thumbnail inside them has its own end marker. After start-of-scan, 0xFF 0xD9 can only be the real end.
    """
    pos = start + 2
    while True:
        if pos + 4 > len(data):
            return None
        if data[pos] != 0xFF or data[pos + 1] == 0xDA:
            break  # start of scan; or a corrupt header, where the first end marker is the best guess
        if data[pos + 1] == 0xFF:  # fill byte before a marker
            pos += 1
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    end = data.find(b"\xff\xd9", pos)
    return None if end < 0 else end + 2
