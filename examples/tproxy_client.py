#!/usr/bin/env python3
"""Minimal tproxy-helper client in pure Python 3 (standard library only).

Speaks the helper's JSON-RPC 2.0 protocol over its Unix socket: one JSON message per
line (see docs/protocol.md). The socket is 0600 root, so run it as root (or as the uid
the helper was started with --allow-uid for).

Usage:
    tproxy_client.py [--socket PATH] [--json] status
    tproxy_client.py [--socket PATH] [--json] start [--port N ...] [--listen-port N]
                                                    [--no-ipv6] [--body-limit BYTES]
    tproxy_client.py [--socket PATH] tail [--count N] [--timeout S]
    tproxy_client.py [--socket PATH] [--json] get ID
    tproxy_client.py [--socket PATH] [--json] stop

    The socket is --socket, else $TPROXY_SOCKET, else /run/tproxy/helper.sock.

    tail prints one line per exchange.completed notification:
        <id> <METHOD> <url> <status|ERR:kind> <response body bytes>
    and ends after --count lines, or exits 3 when --timeout seconds pass first.

Exit status:
    0 success, 1 the helper answered with a JSON-RPC error (printed as
    "error <code> (<data.code>): <message>"), 2 cannot connect / protocol failure,
    3 tail timed out before --count exchanges completed.

Examples:
    sudo ./tproxy_client.py start --port 443 --port 8443
    sudo ./tproxy_client.py tail --count 5
    sudo ./tproxy_client.py get 12
    sudo ./tproxy_client.py stop
"""

import argparse
import base64
import json
import os
import socket
import sys
import time

DEFAULT_SOCKET = "/run/tproxy/helper.sock"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the helper's per-line limit (MAX_MESSAGE_BYTES)


class RpcError(Exception):
    """A JSON-RPC error object returned by the helper."""

    def __init__(self, error):
        self.code = error.get("code")
        self.message = error.get("message", "")
        data = error.get("data")
        self.name = data.get("code", "unknown") if isinstance(data, dict) else "unknown"
        super().__init__(f"error {self.code} ({self.name}): {self.message}")


class ConnectError(Exception):
    """The socket could not be reached, or the connection broke."""


class TimedOut(Exception):
    pass


class Client:
    """One connection: newline framing, request/response id correlation, notifications."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except FileNotFoundError:
            raise ConnectError(
                f"no tproxy-helper socket at {path} (ENOENT): is tproxy-helper running? "
                "(systemctl start tproxy-helper.socket, or pass --socket / set TPROXY_SOCKET)"
            ) from None
        except ConnectionRefusedError:
            raise ConnectError(
                f"connection refused on {path} (ECONNREFUSED): the socket file exists but no "
                "tproxy-helper is listening (stale socket? restart the helper)"
            ) from None
        except PermissionError:
            raise ConnectError(
                f"permission denied on {path} (EACCES): the socket is 0600; run as root "
                "(sudo) or as the uid the helper was started with --allow-uid for"
            ) from None
        except OSError as e:
            raise ConnectError(f"cannot connect to {path}: {e.strerror or e}") from None
        self.buf = b""
        self.next_id = 1
        self.pending_notifications = []

    def close(self):
        self.sock.close()

    def _send(self, message):
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ConnectError(f"connection to {self.path} lost while sending: {e.strerror or e}") from None

    def _read_message(self, deadline=None):
        """Next complete JSON message (one line); raises TimedOut past `deadline` (monotonic)."""
        while True:
            nl = self.buf.find(b"\n")
            if nl != -1:
                line, self.buf = self.buf[:nl], self.buf[nl + 1:]
                line = line.rstrip(b"\r")
                if not line:
                    continue
                try:
                    return json.loads(line.decode("utf-8"))
                except ValueError as e:
                    raise ConnectError(f"helper sent a line that is not JSON: {e}") from None
            if len(self.buf) > MAX_MESSAGE_BYTES:
                raise ConnectError(f"helper sent a line longer than {MAX_MESSAGE_BYTES} bytes")
            if deadline is None:
                self.sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimedOut()
                self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimedOut() from None
            except OSError as e:
                raise ConnectError(f"connection to {self.path} lost: {e.strerror or e}") from None
            if not chunk:
                raise ConnectError("tproxy-helper closed the connection")
            self.buf += chunk

    def call(self, method, params=None):
        """Sends a request and returns its `result`; queues notifications that arrive meanwhile."""
        rid = self.next_id
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self._send(msg)
        while True:
            m = self._read_message()
            if "id" not in m:  # a notification
                self.pending_notifications.append(m)
                continue
            # id null: the helper refused the connection or the line (access denied, oversize).
            if m["id"] is None and "error" in m:
                raise RpcError(m["error"])
            if m["id"] != rid:
                continue  # not ours (cannot happen with one call at a time)
            if "error" in m:
                raise RpcError(m["error"])
            return m.get("result")

    def notifications(self, deadline=None):
        """Yields notifications (queued ones first) until `deadline`; raises TimedOut then."""
        while True:
            while self.pending_notifications:
                yield self.pending_notifications.pop(0)
            m = self._read_message(deadline)
            if "id" not in m:
                yield m
            elif m["id"] is None and "error" in m:
                raise RpcError(m["error"])


def print_status(st):
    state = "running" if st.get("running") else "stopped"
    print(f"capture: {state}")
    if not st.get("available", True):
        print(f"available: no ({st.get('reason', 'unknown reason')})")
    else:
        print("available: yes")
    for l in st.get("listeners", []):
        addr = f"[{l['address']}]" if ":" in l["address"] else l["address"]
        print(f"listener: {addr}:{l['port']}")
    cfg = st.get("config")
    if cfg:
        print(f"ports: {','.join(str(p) for p in cfg['ports'])}")
    print(f"intercepted connections: {st.get('interceptCount', 0)}")
    ca = "installed" if st.get("caInstalled") else "not installed"
    if st.get("trustStorePath"):
        ca += f" ({st['trustStorePath']})"
    print(f"CA: {ca}")


def cmd_status(c, args):
    st = c.call("capture.status", {})
    print(json.dumps(st, indent=2)) if args.json else print_status(st)


def cmd_start(c, args):
    params = {}
    if args.port:
        params["ports"] = args.port
    if args.listen_port is not None:
        params["listenPort"] = args.listen_port
    if args.no_ipv6:
        params["ipv6"] = False
    if args.body_limit is not None:
        params["bodyCaptureLimit"] = args.body_limit
    st = c.call("capture.start", params)
    print(json.dumps(st, indent=2)) if args.json else print_status(st)


def cmd_stop(c, args):
    st = c.call("capture.stop", {})
    print(json.dumps(st, indent=2)) if args.json else print_status(st)


def cmd_tail(c, args):
    c.call("exchanges.subscribe", {})
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = 0
    if args.count is not None and args.count <= 0:
        return 0
    try:
        for n in c.notifications(deadline):
            if n.get("method") != "exchange.completed":
                continue
            ex = n["params"]["exchange"]
            resp = ex.get("response")
            status = str(resp["status"]) if resp and ex["state"] != "error" else f"ERR:{ex.get('error', {}).get('kind', '?')}"
            size = resp["body"]["size"] if resp else 0
            print(f"{ex['id']} {ex['request']['method']} {ex['request']['url']} {status} {size}", flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return 0
    except TimedOut:
        print(f"tail: timed out after {args.timeout:g} s with {seen} of {args.count if args.count is not None else 'unbounded'} exchanges", file=sys.stderr)
        return 3
    return 0


def print_head(first_line, headers):
    print(first_line)
    for name, value in headers:
        print(f"{name}: {value}")


def cmd_get(c, args):
    d = c.call("exchanges.get", {"id": args.id})
    if args.json:
        print(json.dumps(d, indent=2))
        return
    ex = d["exchange"]
    req = ex["request"]
    print_head(f"{req['method']} {req['url']} HTTP/{req['httpVersion']}", req["headers"])
    print()
    resp = ex.get("response")
    if resp:
        print_head(f"HTTP/{resp['httpVersion']} {resp['status']} {resp['statusMessage']}", resp["headers"])
        print()
    if ex.get("error"):
        print(f"error: {ex['error']['kind']}: {ex['error']['message']}")
    for label, key, info in (("request", "requestBody", req["body"]), ("response", "responseBody", resp["body"] if resp else None)):
        decoded = len(base64.b64decode(d[key]))
        total = f" of {info['size']}" + (" (truncated)" if info["truncated"] else "") if info else ""
        print(f"{label} body: {decoded} bytes captured{total}")


def positive_int(text):
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return v


def main(argv=None):
    p = argparse.ArgumentParser(description="Minimal tproxy-helper JSON-RPC client (stdlib only).")
    p.add_argument("--socket", default=os.environ.get("TPROXY_SOCKET") or DEFAULT_SOCKET,
                   help="helper socket (default: $TPROXY_SOCKET or %s)" % DEFAULT_SOCKET)
    p.add_argument("--json", action="store_true", help="print results as JSON")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="capture status")
    s = sub.add_parser("start", help="start capture")
    s.add_argument("--port", type=int, action="append", help="destination port to intercept (repeatable; default 443)")
    s.add_argument("--listen-port", type=int, help="transparent listener port (default 8443)")
    s.add_argument("--no-ipv6", action="store_true", help="do not intercept IPv6 destinations")
    s.add_argument("--body-limit", type=int, help="bytes of each body to keep (default 65536)")
    sub.add_parser("stop", help="stop capture")
    t = sub.add_parser("tail", help="print completed exchanges as they finish")
    t.add_argument("--count", type=int, help="exit after N exchanges")
    t.add_argument("--timeout", type=float, help="give up after S seconds (exit 3)")
    g = sub.add_parser("get", help="show one exchange")
    g.add_argument("id", type=positive_int)
    args = p.parse_args(argv)

    try:
        c = Client(args.socket)
    except ConnectError as e:
        print(f"tproxy_client: {e}", file=sys.stderr)
        return 2
    try:
        handler = {"status": cmd_status, "start": cmd_start, "stop": cmd_stop, "tail": cmd_tail, "get": cmd_get}[args.command]
        return handler(c, args) or 0
    except RpcError as e:
        print(f"tproxy_client: {e}", file=sys.stderr)
        return 1
    except ConnectError as e:
        print(f"tproxy_client: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
