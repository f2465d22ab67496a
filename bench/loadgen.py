"""A small HTTP/1.1 load generator with the standard library only (asyncio streams, keep-alive).

wrk is not needed: `run_load` opens *connections* keep-alive connections to 127.0.0.1:*port* and, on
each, sends the next request of a shared list of pre-built requests (each request is used once, so
every redemption names a distinct voucher) as soon as the previous response has been read, until
*duration* seconds have passed or the list is exhausted. It records each request's latency (from
writing the request to reading the whole response) and status.

    requests = [build_request("POST", "/api/v1/redemptions", body, headers) for body in bodies]
    result = asyncio.run(run_load(port, requests, connections=16, duration=15.0))
    result.summary()  # {"ok": …, "req_per_s": …, "p50_ms": …, "p99_ms": …, …}

Closed-loop load: a connection waits for its response before sending the next request, so at 16
connections the server never has more than 16 requests in hand (like wrk). Responses must carry a
Content-Length (Flask's do). A connection the server closes is reopened and counted in `reconnects`;
a request whose connection broke is counted in `errors`, never in the latencies.
"""

import asyncio
import json
import time
from dataclasses import dataclass, field

from bench.common import percentile


def build_request(method: str, path: str, body: dict | None, headers: dict | None = None) -> bytes:
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@dataclass
class LoadResult:
    connections: int
    duration_s: float = 0.0
    latencies_ms: list = field(default_factory=list)
    statuses: dict = field(default_factory=dict)
    errors: int = 0
    reconnects: int = 0
    exhausted: bool = False
    sample_failures: list = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= int(status) < 300)

    def summary(self) -> dict:
        lat = self.latencies_ms
        return {
            "connections": self.connections, "duration_s": round(self.duration_s, 3), "ok": self.ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "errors": self.errors,
            "reconnects": self.reconnects, "exhausted": self.exhausted,
            "req_per_s": round(self.ok / self.duration_s, 1) if self.duration_s else 0.0,
            "p50_ms": _round(percentile(lat, 50)), "p90_ms": _round(percentile(lat, 90)),
            "p99_ms": _round(percentile(lat, 99)), "max_ms": _round(max(lat) if lat else None),
            "mean_ms": _round(sum(lat) / len(lat) if lat else None),
            "sample_failures": self.sample_failures[:3],
        }


def _round(value):
    return None if value is None else round(value, 2)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
        elif name == b"transfer-encoding":
            raise ValueError("chunked responses are not supported by this load generator")
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def run_load(port: int, requests: list[bytes], *, connections: int, duration: float, start: int = 0,
                   host: str = "127.0.0.1", timeout: float = 30.0) -> tuple[LoadResult, int]:
    """Send requests[start:] for *duration* seconds over *connections* connections.

    :returns: the result and the index of the first request not sent (for the next run).
    """
    result = LoadResult(connections=connections)
    cursor = [start]
    loop_clock = time.perf_counter
    begin = loop_clock()
    deadline = begin + duration

    def take() -> bytes | None:
        if cursor[0] >= len(requests):
            result.exhausted = True
            return None
        request = requests[cursor[0]]
        cursor[0] += 1
        return request

    async def worker() -> None:
        reader = writer = None
        try:
            while loop_clock() < deadline:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                request = take()
                if request is None:
                    return
                sent = loop_clock()
                try:
                    writer.write(request)
                    status, body, close = await asyncio.wait_for(_read_response(reader), timeout)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    writer.close()
                    reader = writer = None
                    result.reconnects += 1
                    continue
                result.latencies_ms.append((loop_clock() - sent) * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if not 200 <= status < 300 and len(result.sample_failures) < 3:
                    result.sample_failures.append({"status": status, "body": body[:300].decode("utf-8", "replace")})
                if close:
                    writer.close()
                    reader = writer = None
                    result.reconnects += 1
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    result.duration_s = loop_clock() - begin
    return result, cursor[0]


def load(port: int, requests: list[bytes], *, connections: int, duration: float, start: int = 0
         ) -> tuple[LoadResult, int]:
    """Synchronous wrapper of run_load (a fresh event loop per run)."""
    return asyncio.run(run_load(port, requests, connections=connections, duration=duration, start=start))
