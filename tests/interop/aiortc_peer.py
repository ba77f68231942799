#!/usr/bin/env python3
"""The aiortc side of tests/interop_aiortc.rs.

A WebRTC peer (aiortc, https://github.com/aiortc/aiortc) driven through stdin/stdout: the Rust
test writes one JSON command per line to stdin; the peer answers each with exactly one JSON
line on stdout ({"ok": ...} or {"error": "..."}). Logs go to stderr. The peer exits on
{"cmd": "close"} or when stdin closes (the test died), so it never outlives the test.

Commands:
  {"cmd": "offer", "big": N}           -> {"ok": "<complete offer SDP>"}
  {"cmd": "accept_answer", "sdp": S}   -> {"ok": true}
  {"cmd": "answer", "sdp": S, "big": N} -> {"ok": "<complete answer SDP>"}
  {"cmd": "results", "timeout": secs}  -> {"ok": {"sender": {...}, "echo": {...}, "pair": ...}}
  {"cmd": "offer_media"}               -> {"ok": "<offer of synthetic audio + video>"}
  {"cmd": "answer_media", "sdp": S}    -> {"ok": "<answer>"}; decodes what arrives
  {"cmd": "decoded"}                   -> {"ok": {"video": frames, "audio": frames}}
  {"cmd": "close"}                     -> {"ok": true}, then exit

Data: this peer creates an ordered channel "from-aiortc" and sends the message script on it
(COUNT messages, even indices text, odd binary, then one binary message of `big` bytes); it
checks every echo. On the channel the Rust side opens, it checks every message against the same
script and echoes it. message() must stay identical to Script::message in tests/interop/mod.rs.

Loopback only: aioice, aiortc's ICE agent, skips 127.0.0.1 when it lists the host's addresses,
and with other interfaces present it would use those. The test keeps all traffic on 127.0.0.1 by
making aioice gather exactly one host candidate, 127.0.0.1, and by passing no ICE servers (so no
STUN request leaves the machine).
"""

import asyncio
import json
import logging
import os
import sys
import time

COUNT = 1000
T0 = time.monotonic()


def log(text):
    print(f"{time.monotonic() - T0:7.3f} {text}", file=sys.stderr, flush=True)


try:
    import aioice.ice
    import aiortc
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
except ImportError as e:  # the Rust test shows this and names the install script
    print(f"cannot import aiortc ({e}); run .ci/install-interop-deps", file=sys.stderr)
    sys.exit(3)

if not callable(getattr(aioice.ice, "get_host_addresses", None)):
    print(
        "aioice.ice.get_host_addresses is gone: this aioice version is not supported "
        "by tests/interop/aiortc_peer.py (it restricts gathering to 127.0.0.1)",
        file=sys.stderr,
    )
    sys.exit(4)


def loopback_only(use_ipv4, use_ipv6):
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = loopback_only


def message(i, big):
    if i >= COUNT:
        return bytes((j * 13 + 7) % 251 for j in range(big))
    if i % 2 == 0:
        return f"msg {i} " + "\u00e9\u4e2d\U0001F600" * (i % 5) + "x" * (i % 300)
    length = (i * 7919) % 4096 + 1
    return bytes((i + j * 31) % 251 for j in range(length))


def total(big):
    return COUNT + (1 if big > 0 else 0)


def describe(m):
    if isinstance(m, str):
        return f"text of {len(m.encode())} bytes"
    return f"binary of {len(m)} bytes"


class Peer:
    def __init__(self):
        self.pc = None
        self.big = 0
        self.sender = None  # future: result of our own channel
        self.echo = None  # future: result of the remote's channel

    def new_pc(self, big, bundle_policy=None):
        self.big = big
        config = RTCConfiguration(iceServers=[])
        if bundle_policy is not None:
            config.bundlePolicy = bundle_policy
        self.pc = RTCPeerConnection(config)
        loop = asyncio.get_running_loop()
        self.sender = loop.create_future()
        self.echo = loop.create_future()

        @self.pc.on("connectionstatechange")
        def on_state():
            log(f"connection state {self.pc.connectionState}")

        @self.pc.on("datachannel")
        def on_datachannel(channel):
            self.run_echo(channel)

    def run_echo(self, channel):
        log(f"echo: channel {channel.label!r} from the remote")
        want = total(self.big)
        state = {"n": 0, "errors": []}

        def finish(why):
            if not self.echo.done():
                log(f"echo: {why} after {state['n']} messages, {len(state['errors'])} errors")
                self.echo.set_result({"received": state["n"], "errors": state["errors"]})

        @channel.on("message")
        def on_message(m):
            n = state["n"]
            exp = message(n, self.big)
            if m != exp or type(m) is not type(exp):
                if len(state["errors"]) < 10:
                    state["errors"].append(
                        f"message {n}: got {describe(m)}, expected {describe(exp)}"
                    )
            try:
                channel.send(m)
            except Exception as e:  # noqa: BLE001 - reported to the test
                if len(state["errors"]) < 10:
                    state["errors"].append(f"echo of message {n}: {e!r}")
            state["n"] = n + 1
            if state["n"] == want:
                finish("done")

        @channel.on("close")
        def on_close():
            finish("channel closed")

    def run_sender(self, channel):
        want = total(self.big)
        state = {"n": 0, "errors": [], "started": None}

        def finish(why):
            if not self.sender.done():
                ms = (time.monotonic() - (state["started"] or time.monotonic())) * 1000
                log(
                    f"sender: {why} after {state['n']} echoes, "
                    f"{len(state['errors'])} errors, {ms:.0f} ms"
                )
                self.sender.set_result({"echoed": state["n"], "errors": state["errors"]})

        @channel.on("open")
        def on_open():
            log(f"sender: channel {channel.label!r} open; sending {want} messages")
            state["started"] = time.monotonic()
            for i in range(want):
                try:
                    channel.send(message(i, self.big))
                except Exception as e:  # noqa: BLE001 - reported to the test
                    state["errors"].append(f"send of message {i}: {e!r}")
                    finish("send failed")
                    return

        @channel.on("message")
        def on_message(m):
            n = state["n"]
            exp = message(n, self.big)
            if m != exp or type(m) is not type(exp):
                if len(state["errors"]) < 10:
                    state["errors"].append(
                        f"echo {n}: got {describe(m)}, expected {describe(exp)}"
                    )
            state["n"] = n + 1
            if state["n"] == want:
                finish("done")

        @channel.on("close")
        def on_close():
            finish("channel closed")

    def selected_pair(self):
        try:
            ice = self.pc.sctp.transport.transport  # RTCDtlsTransport -> RTCIceTransport
            pair = ice._connection._nominated.get(1)
            if pair is None:
                return None
            local, remote = pair.local_candidate, pair.remote_candidate
            return (
                f"{local.type} {local.host}:{local.port} -> "
                f"{remote.type} {remote.host}:{remote.port}"
            )
        except Exception as e:  # noqa: BLE001 - informational only
            return f"unknown ({e!r})"

    async def handle(self, cmd):
        name = cmd.get("cmd")
        if name == "offer":
            if cmd.get("video"):
                # A camera first, then the channel: the peer may have no video codecs and
                # reject the video section. One transport for both (max-bundle): with one
                # transport per section (aiortc's default, "balanced"), aiortc 1.16 starts ICE
                # and DTLS on the rejected section's transport and waits for them before it
                # starts its SCTP transport (RTCPeerConnection.__connect), so no answerer that
                # rejects the first section can open its channel.
                from aiortc.mediastreams import VideoStreamTrack
                from aiortc.rtcconfiguration import RTCBundlePolicy

                self.new_pc(int(cmd.get("big", 0)), RTCBundlePolicy.MAX_BUNDLE)
                self.pc.addTrack(VideoStreamTrack())
            else:
                self.new_pc(int(cmd.get("big", 0)))
            self.run_sender(self.pc.createDataChannel("from-aiortc"))
            # aiortc gathers every candidate inside setLocalDescription: no trickle.
            await self.pc.setLocalDescription(await self.pc.createOffer())
            return self.pc.localDescription.sdp
        if name == "accept_answer":
            await self.pc.setRemoteDescription(RTCSessionDescription(cmd["sdp"], "answer"))
            return True
        if name == "answer":
            self.new_pc(int(cmd.get("big", 0)))
            await self.pc.setRemoteDescription(RTCSessionDescription(cmd["sdp"], "offer"))
            self.run_sender(self.pc.createDataChannel("from-aiortc"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            return self.pc.localDescription.sdp
        if name == "offer_media":
            # Synthetic audio (silence) and video (a still frame), encoded by aiortc (Opus, VP8).
            from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

            self.new_pc(0)
            self.pc.addTrack(AudioStreamTrack())
            self.pc.addTrack(VideoStreamTrack())
            await self.pc.setLocalDescription(await self.pc.createOffer())
            return self.pc.localDescription.sdp
        if name == "answer_media":
            # Receives the offered tracks and counts the frames aiortc decodes from them.
            self.new_pc(0)
            self.decoded = {}

            @self.pc.on("track")
            def on_track(track):
                log(f"receiving {track.kind} track")

                async def consume():
                    while True:
                        try:
                            await track.recv()
                        except Exception as e:  # noqa: BLE001 - the track ended
                            log(f"{track.kind} track ended: {e!r}")
                            return
                        self.decoded[track.kind] = self.decoded.get(track.kind, 0) + 1

                asyncio.ensure_future(consume())

            await self.pc.setRemoteDescription(RTCSessionDescription(cmd["sdp"], "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            return self.pc.localDescription.sdp
        if name == "decoded":
            return getattr(self, "decoded", {})
        if name == "results":
            sender, echo = await asyncio.wait_for(
                asyncio.gather(self.sender, self.echo), float(cmd.get("timeout", 60))
            )
            return {
                "sender": sender,
                "echo": echo,
                "pair": self.selected_pair(),
                "connectionState": self.pc.connectionState,
                "maxMessageSize": self.pc.sctp._remote_max_message_size
                if self.pc.sctp
                else None,
            }
        if name == "close":
            if self.pc:
                await self.pc.close()
            return True
        raise ValueError(f"unknown command {name!r}")


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main():
    if os.environ.get("AIORTC_PEER_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    reply({"ready": True, "aiortc": aiortc.__version__, "aioice": aioice.__version__})
    peer = Peer()
    while True:
        line = await reader.readline()
        if not line:
            log("stdin closed: exiting")
            break
        try:
            cmd = json.loads(line)
        except ValueError as e:
            reply({"error": f"bad JSON: {e}"})
            continue
        try:
            reply({"ok": await peer.handle(cmd)})
        except Exception as e:  # noqa: BLE001 - reported to the test
            log(f"command {cmd.get('cmd')!r} failed: {e!r}")
            reply({"error": f"{type(e).__name__}: {e}"})
        if cmd.get("cmd") == "close":
            break
    if peer.pc:
        await peer.pc.close()


if __name__ == "__main__":
    asyncio.run(main())
