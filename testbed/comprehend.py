"""A fake Amazon Comprehend endpoint answering `DetectToxicContent`, on 127.0.0.1 (moto has none).

    with FakeComprehend(toxicity=0.8, labels={"PROFANITY": 0.7}) as fake:
        environ["AWS_ENDPOINT_URL_COMPREHEND"] = fake.url   # botocore sends Comprehend calls here
        ...
        fake.requests[-1]["TextSegments"]                    # what each call sent

`status` makes every call fail with that HTTP status (a Comprehend error body).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeComprehend:
    def __init__(
        self, toxicity: float = 0.0, labels: dict[str, float] | None = None, status: int = 200
    ) -> None:
        self.toxicity = toxicity
        self.labels = labels or {}
        self.status = status
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append({"target": self.headers.get("X-Amz-Target"), **body})
                if fake.status != 200:
                    answer = {"__type": "InternalServerException", "Message": "The fake failed on purpose."}
                else:
                    labels = [{"Name": name, "Score": score} for name, score in fake.labels.items()]
                    answer = {
                        "ResultList": [
                            {"Labels": labels, "Toxicity": fake.toxicity}
                            for _ in body.get("TextSegments", [])
                        ]
                    }
                data = json.dumps(answer).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeComprehend:
        threading.Thread(target=self._server.serve_forever, name="fake-comprehend", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
