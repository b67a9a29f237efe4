# SPDX-License-Identifier: Apache-2.0
"""`EmbeddedBroker`: an in-process MQTT 3.1.1 broker (amqtt) for the zero-setup demo and examples.

It runs amqtt's broker on its own asyncio event loop in its own (daemon) thread, listening on
127.0.0.1 only, on a free port chosen by the OS (no port races: the socket is bound before the URL
is handed out). Retained messages, QoS 0/1/2 and last-will messages work as in any MQTT broker.
For production and for the test suite use a real broker (Mosquitto); this one is a convenience.

    >>> with EmbeddedBroker() as broker:          # connect paho-mqtt clients to broker.url
    ...     broker.url.startswith("mqtt://127.0.0.1:")
    True

amqtt is imported lazily, on `start`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from .. import TwinExtError

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError"]

_log = logging.getLogger(__name__)
_LISTENER = "default"


class EmbeddedBrokerError(TwinExtError, RuntimeError):
    """The embedded broker could not start or stop; the message says why and what to do."""


class EmbeddedBroker:
    """An amqtt broker in a background thread, bound to ``host`` on a free port.

    Args:
        host: interface to listen on; loopback by default (the broker has no authentication).
        port: TCP port, ``0`` (default) lets the OS choose a free one.
        start_timeout_s: s, how long `start` waits for the broker to come up.

    `start` returns the URL; `stop` shuts the broker down, closes client connections and joins the
    thread (no thread is left behind). A stopped broker can be started again (new port if ``port=0``).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 10.0) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise EmbeddedBrokerError(f"port must be 0 (any free port) or 1..65535, got {port!r}")
        self._host = host
        self._requested_port = port
        self._start_timeout_s = float(start_timeout_s)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._port: int | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    # ---- public API ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``mqtt://<host>:<port>`` of the running broker."""
        if self._port is None:
            raise EmbeddedBrokerError("the embedded broker is not running; call start() first")
        return f"mqtt://{self._host}:{self._port}"

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The TCP port the broker listens on (valid after `start`)."""
        if self._port is None:
            raise EmbeddedBrokerError("the embedded broker is not running; call start() first")
        return self._port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._port is not None

    def start(self) -> str:
        """Start the broker thread and return its URL once it accepts connections."""
        if self._thread is not None:
            raise EmbeddedBrokerError("the embedded broker is already running; call stop() first")
        try:
            import amqtt.broker  # noqa: F401  (fail early, with a useful message)
        except ImportError as exc:
            raise EmbeddedBrokerError(
                f"the embedded broker needs amqtt ({exc}); install it with `pip install 'twin-ext[demo]'` "
                "or point the twin at a running broker (e.g. mosquitto) with --broker mqtt://host:port"
            ) from None
        self._ready.clear()
        self._startup_error = None
        self._port = None
        self._thread = threading.Thread(target=self._thread_main, name="twin_ext-embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            self.stop()
            raise EmbeddedBrokerError(f"the embedded broker did not start within {self._start_timeout_s:g} s")
        if self._startup_error is not None:
            error = self._startup_error
            self._thread.join(timeout=self._start_timeout_s)
            self._thread = None
            raise EmbeddedBrokerError(f"the embedded broker failed to start on {self._host}: {error}") from error
        _log.debug("embedded MQTT broker listening on %s", self.url)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the broker down and join its thread (idempotent)."""
        thread, loop, stop = self._thread, self._loop, self._stop_requested
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # loop already closed between the check and the call
                pass
        thread.join(timeout=timeout_s)
        if thread.is_alive():
            raise EmbeddedBrokerError(f"the embedded broker thread did not stop within {timeout_s:g} s")
        self._thread = None
        self._port = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return f"EmbeddedBroker({where})"

    # ---- broker thread ------------------------------------------------------------------------
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); never escapes the thread
            if not self._ready.is_set():
                self._startup_error = exc
            else:
                _log.exception("embedded MQTT broker stopped with an error")
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._loop = None
                self._ready.set()

    async def _serve(self) -> None:
        from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
        from amqtt.broker import Broker
        from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType

        self._stop_requested = asyncio.Event()
        # An "external" listener: we own the TCP server (bound to port 0, so the OS picks a free port
        # and there is no window for another process to take it) and hand each connection to amqtt.
        config = BrokerConfig(
            listeners={_LISTENER: ListenerConfig(type=ListenerType.EXTERNAL)},
            plugins={"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        )
        broker = Broker(config, loop=asyncio.get_running_loop())
        await broker.start()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._connections.add(writer)
            try:
                await broker.external_connected(StreamReaderAdapter(reader), StreamWriterAdapter(writer), _LISTENER)
            except Exception as exc:  # one bad client must not take the broker down
                _log.debug("embedded broker: client connection ended with %r", exc)
            finally:
                self._connections.discard(writer)
                if not writer.is_closing():
                    writer.close()

        server = await asyncio.start_server(on_connect, self._host, self._requested_port)
        try:
            self._port = int(server.sockets[0].getsockname()[1])
            self._ready.set()
            await self._stop_requested.wait()
        finally:
            server.close()
            for writer in list(self._connections):
                writer.close()
            await _quietly(broker.shutdown(), timeout_s=5.0)
            await _quietly(server.wait_closed(), timeout_s=2.0)


async def _quietly(awaitable: Any, *, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout_s)
    except Exception as exc:  # shutting down: log and carry on closing
        _log.debug("embedded broker shutdown step failed: %r", exc)
