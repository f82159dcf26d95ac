"""A camera that drops most of its frames is failing, not "OK" (service/camera_health.py)."""

from sorter.controller.service.camera_health import CameraHealth


def feed(h: CameraHealth, seconds: int, fps: int, drop_every: int | None, t0: float = 0.0) -> float:
    dropped = h.dropped
    t = t0
    for i in range(seconds * fps):
        t = t0 + i / fps
        if drop_every and i % drop_every:
            dropped += 1  # thrown away by the worker: only every drop_every-th frame is decoded
            continue
        h.frame_done(t, dropped)
    return t


def test_a_camera_that_keeps_up_is_ok():
    h = CameraHealth("top")
    h.up = True
    feed(h, 10, 20, None)
    assert h.status(True) == "ok" and h.drop_share() == 0.0
    assert h.snapshot(True)["status"] == "ok"


def test_a_camera_that_drops_most_frames_is_shown_dropping_and_recovers():
    h = CameraHealth("top")
    h.up = True
    t = feed(h, 10, 20, 20)  # 1 frame in 20 decoded: the demo's 2 % read rate
    assert h.status(True) == "dropping" and h.drop_share() > 0.9
    assert h.snapshot(True)["status"] == "dropping"
    feed(h, 40, 20, None, t0=t + 0.05)  # CPU back: the window forgets the drops
    assert h.status(True) == "ok"


def test_down_wins_and_a_few_frames_say_nothing():
    h = CameraHealth("top")
    assert h.status(True) == "down"
    h.up = True
    feed(h, 1, 5, 2)
    assert h.drop_share() is None and h.status(True) == "ok"
    assert h.status(False) == "down"
