"""Tests of the webcam widget's frame protocol, without a browser.

Frames are real faces from the dataset mirror (``MFR_DATA_DIR``), encoded as
the browser encodes them and handed to the widget's message handler.
"""

import io

import numpy as np
import pytest
from PIL import Image

from course_lib.data import load_lfw_people
from course_lib.images import read_image
from course_lib.webcam import (
    FrameRejected,
    WebcamWidget,
    encode_frame,
    encode_jpeg,
    parse_frame_message,
    play_frames,
    validate_detections,
)


@pytest.fixture(scope="module")
def face_frame():
    """A 480x640 RGB frame with one LFW face in it."""
    face = read_image(load_lfw_people("DevTrain", min_images=5)[0].path)
    frame = np.full((480, 640, 3), 110, dtype=np.uint8)
    frame[100:350, 200:450] = face
    return frame


def centre_box(image):
    height, width = image.shape[:2]
    return [{"box": (width / 4, height / 4, 3 * width / 4, 3 * height / 4), "label": "face", "colour": "#1f77b4", "score": 0.9}]


def started_widget(processor=centre_box):
    widget = WebcamWidget(processor=processor)
    widget.running = True
    return widget


# --- valid frames


def test_parse_valid_frame(face_frame):
    content, buffers = encode_frame(face_frame, frame_id=7, source="camera", sent_at=12.5)
    frame = parse_frame_message(content, buffers)
    assert frame.id == 7
    assert frame.source == "camera"
    assert frame.sent_at == 12.5
    assert frame.image.shape == (480, 640, 3)
    assert frame.image.dtype == np.uint8


def test_parse_keeps_rgb_order():
    red = np.zeros((32, 48, 3), dtype=np.uint8)
    red[..., 0] = 255
    content, buffers = encode_frame(red, quality=95)
    image = parse_frame_message(content, buffers).image
    assert image[..., 0].mean() > 240
    assert image[..., 2].mean() < 15


def test_parse_accepts_memoryview(face_frame):
    content, buffers = encode_frame(face_frame)
    frame = parse_frame_message(content, [memoryview(buffers[0])])
    assert frame.image.shape == face_frame.shape


def test_handle_returns_result(face_frame):
    widget = started_widget()
    reply = widget.handle_frame(*encode_frame(face_frame, frame_id=3, sent_at=100.0))
    assert reply["type"] == "result"
    assert reply["id"] == 3
    assert reply["sent_at"] == 100.0
    assert reply["width"] == 640
    assert reply["height"] == 480
    assert reply["detections"] == [{"box": [160.0, 120.0, 480.0, 360.0], "label": "face", "colour": "#1f77b4", "score": 0.9}]
    assert widget.frames_processed == 1
    assert widget.last_frame.shape == (480, 640, 3)


# --- malformed and oversized frames


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"type": None}, "'type'"),
        ({"id": "seven"}, "'id'"),
        ({"id": True}, "'id'"),
        ({"width": 640.5}, "'width'"),
        ({"sent_at": float("nan")}, "'sent_at'"),
        ({"source": "screen"}, "source 'screen' is unknown"),
        ({"type": "hello"}, "not 'frame'"),
        ({"width": 320}, "declares 320x480"),
    ],
)
def test_parse_rejects_bad_field(face_frame, change, expected):
    content, buffers = encode_frame(face_frame)
    content = {**content, **change}
    if change.get("type") is None and "type" in change:
        del content["type"]
    with pytest.raises(FrameRejected, match=expected):
        parse_frame_message(content, buffers)


def test_parse_rejects_missing_field(face_frame):
    content, buffers = encode_frame(face_frame)
    del content["height"]
    with pytest.raises(FrameRejected, match="no 'height' field"):
        parse_frame_message(content, buffers)


def test_parse_rejects_non_dict(face_frame):
    _, buffers = encode_frame(face_frame)
    with pytest.raises(FrameRejected, match="content is a list"):
        parse_frame_message(["frame"], buffers)


@pytest.mark.parametrize("count", [0, 2])
def test_parse_rejects_buffer_count(face_frame, count):
    content, buffers = encode_frame(face_frame)
    with pytest.raises(FrameRejected, match=f"has {count} binary buffers"):
        parse_frame_message(content, buffers * count)


def test_parse_rejects_png(face_frame):
    content, _ = encode_frame(face_frame)
    stream = io.BytesIO()
    Image.fromarray(face_frame).save(stream, format="PNG")
    with pytest.raises(FrameRejected, match="JPEG signature"):
        parse_frame_message(content, [stream.getvalue()])


def test_parse_rejects_truncated_jpeg(face_frame):
    content, buffers = encode_frame(face_frame)
    with pytest.raises(FrameRejected, match="not a readable JPEG|could not be decoded"):
        parse_frame_message(content, [buffers[0][:40]])


def test_parse_rejects_garbage_after_signature(face_frame):
    content, _ = encode_frame(face_frame)
    with pytest.raises(FrameRejected, match="not a readable JPEG"):
        parse_frame_message(content, [b"\xff\xd8\xff" + bytes(500)])


def test_parse_rejects_too_many_bytes(face_frame):
    content, buffers = encode_frame(face_frame, quality=95)
    with pytest.raises(FrameRejected, match="over the limit of 1,000 bytes"):
        parse_frame_message(content, buffers, max_bytes=1000)


def test_parse_rejects_too_large_size():
    # A plain 2000x1200 JPEG is small in bytes, so only the size check can catch it.
    big = np.full((1200, 2000, 3), 128, dtype=np.uint8)
    content, buffers = encode_frame(big)
    assert len(buffers[0]) < 200_000
    with pytest.raises(FrameRejected, match="2000x1200 pixels, over the limit of 1920x1080"):
        parse_frame_message(content, buffers)


def test_handle_reports_rejection(face_frame):
    widget = started_widget()
    content, _ = encode_frame(face_frame, frame_id=4)
    reply = widget.handle_frame(content, [b"not a jpeg"])
    assert reply["type"] == "error"
    assert reply["id"] == 4
    assert reply["message"].startswith("Frame rejected:")
    assert widget.status == reply["message"]
    assert widget.frames_rejected == 1
    assert widget.frames_processed == 0


def test_handle_survives_nonsense_content():
    widget = started_widget()
    reply = widget.handle_frame("frame", [])
    assert reply["type"] == "error"
    assert "expected a dictionary" in reply["message"]


def test_widget_limits_apply(face_frame):
    widget = started_widget()
    widget.max_size = (320, 240)
    reply = widget.handle_frame(*encode_frame(face_frame))
    assert reply["type"] == "error"
    assert "over the limit of 320x240" in reply["message"]


# --- start and stop


def test_stopped_widget_ignores_frames(face_frame):
    calls = []

    def counting(image):
        calls.append(image.shape)
        return []

    widget = WebcamWidget(processor=counting)
    reply = widget.handle_frame(*encode_frame(face_frame, frame_id=1))
    assert reply == {"type": "ignored", "id": 1, "sent_at": 0.0}
    assert calls == []
    assert widget.frames_ignored == 1


def test_stop_stops_processing(face_frame):
    calls = []

    def counting(image):
        calls.append(image.shape)
        return []

    widget = WebcamWidget(processor=counting)
    widget.start()
    first = widget.handle_frame(*encode_frame(face_frame, frame_id=1))
    widget.stop()
    second = widget.handle_frame(*encode_frame(face_frame, frame_id=2))
    assert first["type"] == "result"
    assert second["type"] == "ignored"
    assert len(calls) == 1
    assert widget.frames_processed == 1
    assert widget.frames_ignored == 1


# --- processor errors


def test_processor_exception_reported(face_frame):
    def broken(image):
        raise KeyError("model")

    widget = started_widget(broken)
    reply = widget.handle_frame(*encode_frame(face_frame, frame_id=9))
    assert reply["type"] == "error"
    assert reply["id"] == 9
    assert "broken failed on frame 9: KeyError" in reply["message"]
    assert widget.frames_rejected == 1


def test_processor_bad_output_reported(face_frame):
    widget = started_widget(lambda image: [{"box": (0, 0, 10, 10), "label": "face"}])
    reply = widget.handle_frame(*encode_frame(face_frame))
    assert reply["type"] == "error"
    assert "Detection 0 has no 'colour', 'score'" in reply["message"]


def test_custom_message_sends_reply(face_frame, monkeypatch):
    sent = []
    widget = started_widget(lambda image: 1 / 0)
    monkeypatch.setattr(widget, "send", lambda content, buffers=None: sent.append(content))
    content, buffers = encode_frame(face_frame, frame_id=5)
    widget._on_custom_message(widget, content, buffers)
    assert len(sent) == 1
    assert sent[0]["type"] == "error"
    assert "ZeroDivisionError" in sent[0]["message"]


def test_status_message_sets_status(monkeypatch):
    widget = WebcamWidget()
    monkeypatch.setattr(widget, "send", lambda content, buffers=None: pytest.fail("A status message needs no reply."))
    widget._on_custom_message(widget, {"type": "status", "message": "Camera access was denied (NotAllowedError)."}, [])
    assert widget.status == "Camera access was denied (NotAllowedError)."


def test_sequence_request_sends_frames(face_frame, monkeypatch):
    sent = []
    widget = WebcamWidget()
    monkeypatch.setattr(widget, "send", lambda content, buffers=None: sent.append((content, buffers)))
    widget.load_sequence([face_frame, face_frame[::-1]])
    widget._on_custom_message(widget, {"type": "sequence_request"}, [])
    assert widget.sequence_length == 2
    assert [content["count"] for content, _ in sent] == [2, 2]
    assert all(buffer.startswith(b"\xff\xd8\xff") for buffer in sent[-1][1])


# --- detections and traits


@pytest.mark.parametrize(
    "detections, expected",
    [
        ({"box": (0, 0, 1, 1)}, "must return a list"),
        ([("face",)], "Detection 0 is a tuple"),
        ([{"box": (0, 0, 1), "label": "a", "colour": "red", "score": 1}], "box has 3 numbers"),
        ([{"box": (5, 5, 2, 9), "label": "a", "colour": "red", "score": 1}], "x_min > x_max"),
        ([{"box": ("a", 0, 1, 1), "label": "a", "colour": "red", "score": 1}], "not four numbers"),
        ([{"box": (0, 0, 1, 1), "label": 3, "colour": "red", "score": 1}], "label 3 is a int"),
        ([{"box": (0, 0, 1, 1), "label": "a", "colour": "", "score": 1}], "not a CSS colour"),
        ([{"box": (0, 0, 1, 1), "label": "a", "colour": "red", "score": "high"}], "score 'high'"),
        ([{"box": (0, 0, 900, 1), "label": "a", "colour": "red", "score": 1}], "outside the 640x480 image"),
    ],
)
def test_validate_rejects(detections, expected):
    with pytest.raises(ValueError, match=expected):
        validate_detections(detections, (480, 640, 3))


def test_validate_converts_numpy():
    cleaned = validate_detections([{"box": np.array([1, 2, 3, 4], dtype=np.float32), "label": "a", "colour": "red", "score": np.float32(0.5)}])
    assert cleaned == [{"box": [1.0, 2.0, 3.0, 4.0], "label": "a", "colour": "red", "score": 0.5}]
    assert type(cleaned[0]["score"]) is float


@pytest.mark.parametrize("trait, value", [("max_fps", 0.0), ("max_fps", 100.0), ("quality", 1.5), ("source", "screen")])
def test_traits_reject_bad_values(trait, value):
    widget = WebcamWidget()
    with pytest.raises(Exception, match=trait):
        setattr(widget, trait, value)


def test_encode_jpeg_rejects_float():
    with pytest.raises(ValueError, match="RGB uint8"):
        encode_jpeg(np.zeros((4, 4, 3), dtype=np.float32))


def test_play_frames_counts(face_frame):
    widget = WebcamWidget(processor=centre_box)
    report = play_frames(widget, [face_frame, face_frame])
    assert report.frames == 2
    assert report.processed == 2
    assert report.errors == []
    assert report.faces == 2
    assert report.label_counts() == {"face": 2}
