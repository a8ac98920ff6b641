#!/usr/bin/env python3
"""A little exam traffic on a local cluster, so every metric family has
samples (docs/observability.md): a plan of 3 rooms x 10 candidates imported,
opened and started; every candidate logs in on a node in turn and saves an
answer over REST (some forwarded to the room's owner); a third of them open a
socket (some tunnelled through a node that does not own their room), answer
over it, read their ack, and get a proctor's warning; one wrong access code,
one invalid answer and one resume. Standard library only; bounded in count
and time.

  scripts/observability-load.py [--nodes 8081,8082,8083] [--key local-admin-key]
"""

import argparse
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.request


def http(method, url, body=None, headers=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Socket:
    """A minimal WebSocket client (RFC 6455): text frames, masked."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"no upgrade: {head!r}")

    def _exact(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise RuntimeError("socket closed")
            data += chunk
        return data

    def send(self, frame, opcode=0x1):
        payload = json.dumps(frame).encode() if opcode == 0x1 else frame
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self):
        """The next text frame as JSON; None when the server closed."""
        while True:
            first, second = self._exact(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._exact(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._exact(8))
            payload = self._exact(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                return None
            if opcode == 0x1:
                return json.loads(payload)

    def expect(self, kind, deadline_s=10):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            frame = self.recv()
            if frame is None:
                raise RuntimeError(f"closed while waiting for {kind}")
            if frame.get("t") == kind:
                return frame
        raise RuntimeError(f"no {kind} in time")

    def close(self):
        try:
            self.send(struct.pack("!H", 1000), opcode=0x8)
        finally:
            self.sock.close()


def plan(plan_id, rooms, per_room):
    return {
        "title": f"Observability {plan_id}",
        "starts_at": "2026-12-01T09:00:00Z",
        "duration_s": 3600,
        "settings": {"heartbeat_s": 10, "late_entry_s": 600},
        "questions": [
            {"id": "q1", "kind": "single", "choices": ["1", "2", "3", "4"], "answer": "2", "points": 2},
            {"id": "q2", "kind": "text", "answer": "서울"},
        ],
        "rooms": [{"id": f"room-{r}", "name": f"Room {r}", "capacity": per_room} for r in range(1, rooms + 1)],
        "proctors": [
            {"id": f"proctor-{r}", "name": f"Proctor {r}", "login": f"{plan_id}-proctor-{r}",
             "password": f"password-{r}", "room_ids": [f"room-{r}"]}
            for r in range(1, rooms + 1)
        ],
        "candidates": [
            {"id": f"cand-{n:04}", "reg_no": f"R{n:04}", "name": f"Candidate {n}",
             "room_id": f"room-{(n - 1) // per_room + 1}", "seat": (n - 1) % per_room + 1,
             "access_code": f"code-{n:04}"}
            for n in range(1, rooms * per_room + 1)
        ],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="8081,8082,8083")
    parser.add_argument("--key", default="local-admin-key")
    parser.add_argument("--plan", default=f"obs-{int(time.time())}")
    args = parser.parse_args()
    ports = [int(port) for port in args.nodes.split(",")]
    base = lambda n: f"http://127.0.0.1:{ports[n % len(ports)]}"
    admin = {"X-Api-Key": args.key}
    plan_id, rooms, per_room = args.plan, 3, 10

    status, body = http("PUT", f"{base(0)}/api/v1/admin/plans/{plan_id}", plan(plan_id, rooms, per_room), admin)
    assert status in (200, 201), (status, body)
    for action in ("open", "start"):
        status, body = http("POST", f"{base(0)}/api/v1/admin/plans/{plan_id}/commands", {"action": action}, admin)
        assert status == 200, (action, status, body)

    tokens = {}
    for n in range(1, rooms * per_room + 1):
        status, body = http("POST", f"{base(n)}/api/v1/auth/candidate",
                            {"plan_id": plan_id, "reg_no": f"R{n:04}", "access_code": f"code-{n:04}"})
        assert status == 200, (n, status, body)
        tokens[n] = body["token"]
        status, body = http("PUT", f"{base(n + 1)}/api/v1/candidate/answers/q1", {"value": "2", "cseq": 1},
                            {"Authorization": f"Bearer {tokens[n]}"})
        assert status == 200, (n, status, body)
    status, _ = http("POST", f"{base(0)}/api/v1/auth/candidate",
                     {"plan_id": plan_id, "reg_no": "R0001", "access_code": "wrong"})
    assert status == 401, status

    sockets = {}
    for n in range(1, rooms * per_room + 1, 3):
        ws = Socket(ports[n % len(ports)], f"/ws/candidate?token={tokens[n]}")
        ws.send({"t": "hello"})
        welcome = ws.expect("welcome")
        ws.send({"t": "answer", "q": "q2", "value": "서울", "cseq": 2})
        ws.expect("ack")
        ws.send({"t": "event", "kind": "focus_lost"})
        sockets[n] = (ws, welcome["session"])
    # An invalid answer, and a resume.
    first, session = sockets[1]
    first.send({"t": "answer", "q": "q1", "value": "nine", "cseq": 3})
    first.expect("error")
    first.close()
    again = Socket(ports[1], f"/ws/candidate?token={tokens[1]}")
    again.send({"t": "hello", "resume": {"session": session, "last_seq": 0}})
    again.expect("welcome")
    sockets[1] = (again, session)

    # Each room's proctor warns a connected candidate of the room.
    delivered = 0
    for room in range(1, rooms + 1):
        status, body = http("POST", f"{base(room)}/api/v1/auth/proctor",
                            {"login": f"{plan_id}-proctor-{room}", "password": f"password-{room}"})
        assert status == 200, (status, body)
        proctor = body["token"]
        candidate = next(n for n in sockets if (n - 1) // per_room + 1 == room)
        status, body = http("POST", f"{base(room)}/api/v1/proctor/candidates/cand-{candidate:04}/commands",
                            {"action": "warn", "reason": "eyes on your screen"},
                            {"Authorization": f"Bearer {proctor}"})
        assert status == 200, (status, body)
        delivered += bool(body.get("delivered"))
    assert delivered == rooms, delivered
    # Rooms report their seats at their tick, Prometheus scrapes.
    time.sleep(3)
    for ws, _ in sockets.values():
        ws.close()
    print(f"observability-load: {len(tokens)} candidates, {len(sockets)} sockets, {delivered} commands delivered")


if __name__ == "__main__":
    sys.exit(main())
