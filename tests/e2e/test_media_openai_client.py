"""Images, audio, files and batches through the real server, with the official `openai` client, in
front of the fake upstream: uploads reach the provider byte for byte and are streamed (the
worker's memory stays flat), speech comes back as it is made, files and batches are each client's
own, and every call has a usage record with a cost."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import openai
import pytest

from service.governance.key_store import hash_key
from tests.support.waiting import wait_until

PROVIDER_KEY = "sk-provider-media-0123456789"
ALICE = "aip_media-alice-000000000000000000000000000000001"
BOB = "aip_media-bob-00000000000000000000000000000000002"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server_settings():
    return {
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_CLIENT_KEYS": json.dumps(
            {"alice": {"keys": [hash_key(ALICE)]}, "bob": {"keys": [hash_key(BOB)]}}
        ),
        "LOG_FORMAT": "json",
    }


@pytest.fixture
def client(server):
    made = []

    def make(key: str = ALICE) -> openai.OpenAI:
        made.append(openai.OpenAI(api_key=key, base_url=server.url + "/v1", max_retries=0, timeout=60))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def usage_records(server, route: str) -> list[dict]:
    return [
        r for r in server.log_records() if r.get("message", "").startswith("usage ") and r["route"] == route
    ]


def last_usage(server, route: str) -> dict:
    wait_until(lambda: usage_records(server, route), timeout=5)
    return usage_records(server, route)[-1]


def worker_pid(server) -> int:
    return int(Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()[0])


def memory_kb(pid: int, field: str) -> int:
    """A /proc/<pid>/status figure in bytes: VmRSS (resident now) or VmHWM (the peak of it)."""
    line = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(field)
    )
    return int(line.split()[1]) * 1024


# --- images ------------------------------------------------------------------------------------------


def test_an_image_is_generated_and_priced_per_image(client, fake, server):
    answer = client().images.generate(
        model="dall-e-3", prompt="a red apple", n=1, size="1024x1792", quality="hd"
    )
    assert answer.data[0].b64_json  # passed through as it came
    assert fake.requests_to("/images/generations")[-1].body["prompt"] == "a red apple"
    record = last_usage(server, "/v1/images/generations")
    assert record["client"] == "alice" and record["images"] == 1
    assert record["cost_usd"] == pytest.approx(0.12)  # dall-e-3, hd, 1024x1792


def test_an_image_edit_reaches_the_provider_byte_for_byte(client, fake, server):
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 400
    mask = b"\x89PNG\r\n\x1a\nmask" + b"\r\n--" * 100  # boundary-like bytes inside a file
    sdk = client()
    raw = sdk.images.with_raw_response.edit(
        model="dall-e-2",
        image=("apple.png", image, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="make it green",
        n=2,
        size="512x512",
        response_format="url",
    )
    answer = raw.parse()
    assert [d.url for d in answer.data] == [
        "https://images.example/fake-0.png",
        "https://images.example/fake-1.png",
    ]
    sent = raw.http_request.read()
    received = fake.requests_to("/images/edits")[-1]
    assert received.raw == sent  # not a byte rewritten
    assert received.headers["content-type"] == raw.http_request.headers["content-type"]
    assert received.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    record = last_usage(server, "/v1/images/edits")
    assert record["images"] == 2 and record["cost_usd"] == pytest.approx(0.036)


def test_a_bedrock_model_on_an_image_route_is_a_400_naming_what_bedrock_serves(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client().images.generate(model="bedrock/amazon.nova-canvas-v1:0", prompt="x")
    assert "/v1/chat/completions" in caught.value.message and "/v1/images/generations" in caught.value.message


def test_a_malformed_multipart_body_is_a_400_naming_the_problem(server):
    import urllib.request

    body = b'--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--xyz\r\nno end'
    request = urllib.request.Request(
        server.url + "/v1/audio/transcriptions",
        data=body,
        headers={"Authorization": f"Bearer {ALICE}", "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    error = json.loads(caught.value.read())["error"]
    assert error["code"] == "invalid_multipart" and "closing boundary" in error["message"]


# --- audio -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [("json", "Heard"), ("text", "Heard"), ("srt", "-->"), ("vtt", "WEBVTT"), ("verbose_json", "Heard")],
)
def test_a_transcription_comes_back_in_the_format_asked(client, response_format, expected):
    answer = client().audio.transcriptions.create(
        model="whisper-1", file=("talk.mp3", b"x" * 32000, "audio/mpeg"), response_format=response_format
    )
    text = answer if isinstance(answer, str) else answer.text
    assert expected in text


def test_a_streamed_transcription_arrives_as_events(client):
    stream = client().audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("talk.mp3", b"y" * 1000, "audio/mpeg"), stream=True
    )
    events = list(stream)
    assert events[-1].type == "transcript.text.done" and events[-1].text == "Heard 1000 bytes."


def test_a_20_mb_recording_is_transcribed_while_the_workers_memory_stays_flat(client, server):
    sdk = client()
    sdk.audio.transcriptions.create(model="whisper-1", file=("warm.mp3", b"w" * MB, "audio/mpeg"))
    pid = worker_pid(server)
    before = memory_kb(pid, "VmRSS:")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from here
    recording = b"\xff\xfb" * (10 * MB)  # 20 MiB
    answer = sdk.audio.transcriptions.create(
        model="whisper-1", file=("lecture.mp3", recording, "audio/mpeg"), response_format="verbose_json"
    )
    grown = memory_kb(pid, "VmHWM:") - before  # at its highest while the upload went through
    assert answer.text == f"Heard {len(recording)} bytes."
    # Held whole, the upload would raise the peak by its 20 MiB at least; streamed, what grows is
    # the allocator's working set for blocks in flight (4 to 5 MiB seen on a loaded machine).
    assert grown < 8 * MB, f"the worker grew by {grown / MB:.1f} MB for a 20 MB upload"
    record = last_usage(server, "/v1/audio/transcriptions")
    minutes = len(recording) / 16000 / 60  # the fake's duration
    assert record["cost_usd"] == pytest.approx(0.006 * minutes, rel=1e-3)


def test_a_30_mb_recording_is_refused_with_413(client, fake):
    before = len(fake.requests_to("/audio/transcriptions"))
    with pytest.raises(openai.APIStatusError) as caught:
        client().audio.transcriptions.create(
            model="whisper-1", file=("long.mp3", b"z" * (30 * MB), "audio/mpeg")
        )
    assert caught.value.status_code == 413
    assert "AIPROXY_MAX_UPLOAD_BYTES" in caught.value.message
    assert len(fake.requests_to("/audio/transcriptions")) == before  # nothing was sent


def test_speech_arrives_as_a_stream(client, fake, server):
    fake.media.speech_chunks, fake.media.speech_pause = 4, 0.5  # the fake takes 1.5 s to send it all
    started = time.monotonic()
    with client().audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello class"
    ) as response:
        chunks = response.iter_bytes()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
    total = time.monotonic() - started
    assert first and first_at < 1.0 < total
    assert len(first) + len(rest) == 4 * 32768
    record = last_usage(server, "/v1/audio/speech")
    assert record["characters"] == 11 and record["cost_usd"] == pytest.approx(15.0 * 11 / 1e6)


# --- files and batches -------------------------------------------------------------------------------


def test_a_file_is_invisible_to_another_client(client, server):
    alice, bob = client(ALICE), client(BOB)
    uploaded = alice.files.create(
        file=("notes.jsonl", io.BytesIO(b'{"a": 1}\n'), "application/jsonl"), purpose="batch"
    )
    assert uploaded.id in [f.id for f in alice.files.list()]
    assert alice.files.retrieve(uploaded.id).bytes == 9
    assert alice.files.content(uploaded.id).read() == b'{"a": 1}\n'
    assert uploaded.id not in [f.id for f in bob.files.list()]
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.delete(uploaded.id)
    assert alice.files.delete(uploaded.id).deleted is True
    record = last_usage(server, "/v1/files/<file_id>")
    assert record["cost_usd"] == 0.0


def test_a_batch_is_its_clients_own_and_is_charged_at_half_price_when_it_completes(client, fake, server):
    alice, bob = client(ALICE), client(BOB)
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini"},
        }
        for i in range(3)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = alice.files.create(file=("in.jsonl", data, "application/jsonl"), purpose="batch")
    with pytest.raises(openai.NotFoundError):  # bob may not build a batch of alice's file
        bob.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    batch = alice.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    with pytest.raises(openai.NotFoundError):
        bob.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        bob.batches.retrieve(batch.id)
    assert batch.id not in [b.id for b in bob.batches.list()]
    assert batch.id in [b.id for b in alice.batches.list()]
    done = alice.batches.retrieve(batch.id)
    assert done.status == "completed"
    # Its answers are alice's to download, and still nobody else's.
    answers = [json.loads(line) for line in alice.files.content(done.output_file_id).read().splitlines()]
    assert [a["custom_id"] for a in answers] == ["r0", "r1", "r2"]
    with pytest.raises(openai.NotFoundError):
        bob.files.content(done.output_file_id)
    alice.batches.retrieve(batch.id)  # charged once only
    charges = [r for r in usage_records(server, "/v1/batches/<batch_id>") if r.get("batch_id") == batch.id]
    assert len(charges) == 1
    listed = 3 * (20 * 0.15 + 10 * 0.6) / 1e6  # gpt-4o-mini, 20 prompt and 10 completion tokens each
    assert charges[0]["client"] == "alice" and charges[0]["cost_usd"] == pytest.approx(listed / 2)
