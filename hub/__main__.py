"""Command line of the hub: `cable-hub`, `python -m hub`, `orchestrate hub`."""

from __future__ import annotations

import argparse
import os
import sys

# TLS ends in front of the hub, yet `import asyncio` pulls in ssl (and hashlib pulls
# in OpenSSL's libcrypto): together ~9 MB of resident memory. Marking them as absent
# makes asyncio take its documented no-ssl path and hashlib use its built-in SHA code.
# Only effective when nothing has imported them yet, i.e. in a process that runs just the hub.
_UNNEEDED_MODULES = ("ssl", "_ssl", "_hashlib")


def _skip_unneeded_modules() -> None:
    if "asyncio" in sys.modules:
        return
    for name in _UNNEEDED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


DESCRIPTION = """\
A lean Action Cable / Navigator-cable compatible WebSocket hub.

Two ways to run it:
  cable-hub --config navigator.yml   the hub serves navigator.yml's server.listen, health check and
                                     cable.{enabled,path,broadcast_path}; options come from hub.yml
                                     beside it (or --hub-config)
  cable-hub --hub-config hub.yml     behind Navigator: hub.yml's server section gives the port and paths
                                     and the cable is always on; navigator.yml is not read, and a hub.yml
                                     with a server section together with --config is refused (they would
                                     disagree: Navigator's own cable is off in that deployment)
SIGHUP re-reads the same files; SIGTERM closes connections (clients are told to reconnect) and exits.
"""

NAVIGATOR_PROTOCOL_HELP = """\
rules for clients of Navigator's own protocol (a WebSocket without subprotocol), overriding hub.yml's
navigator_protocol. policy (default): they may subscribe only to streams of unsigned channels, or with
public streams on to any stream that is not a signed channel's; broadcasts may be arrays and answer 201.
open: answer like Navigator's built-in cable, for a rehearsal where the hub plays Navigator: any stream
may be subscribed, a broadcast is one object (an array is 400) answered 200 with an empty body, and with
cable.enabled false both cable paths answer 404. Action Cable clients keep the channel rules either way
"""


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the width of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's, given the width it would find itself: argparse finds it through shutil, which
    imports the compression modules with it (~0.45 MB of resident memory for the hub's lifetime)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_columns() - 2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from .config import BROKER_KINDS, NAVIGATOR_PROTOCOLS  # only once main() has marked the unneeded modules absent

    parser = argparse.ArgumentParser(
        prog="cable-hub", description=DESCRIPTION, formatter_class=_HelpFormatter
    )
    parser.add_argument("--config", metavar="NAVIGATOR_YML", help="navigator.yml (server.listen, health check, cable.*)")
    parser.add_argument("--hub-config", metavar="HUB_YML", help="hub options (default: hub.yml beside navigator.yml, if present); alone when it has a server section")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; use 0.0.0.0 to serve other hosts)")
    parser.add_argument("--port", type=int, help="port to bind, overriding server.listen (0 picks a free port)")
    parser.add_argument("--public-streams", action=argparse.BooleanOptionalAction, default=None, help="allow unsigned streams: $pubsub stream_name, and (navigator protocol policy) any stream over Navigator's protocol that is not a signed channel's")
    parser.add_argument("--navigator-protocol", choices=NAVIGATOR_PROTOCOLS, help=NAVIGATOR_PROTOCOL_HELP)
    parser.add_argument("--channel", action="append", default=[], metavar="NAME=STREAM", help="map an Action Cable channel to a stream template, e.g. ScoresChannel=live-scores-{database}")
    parser.add_argument("--signed-channel", action="append", default=[], metavar="NAME=STREAM", help="like --channel, but the subscription must carry a matching signed_stream_name")
    parser.add_argument("--broker", choices=("none", *BROKER_KINDS), help="share broadcasts with the region's other hubs through NATS or Redis, overriding hub.yml's broker.kind; none: this hub's clients only")
    parser.add_argument("--broker-url", metavar="URL", help="nats://HOST:PORT or redis://HOST:PORT/DB, overriding broker.url (no credentials: hub.yml's broker.user and broker.password_env)")
    parser.add_argument("--broker-prefix", metavar="PREFIX", help="subject or channel prefix, overriding broker.prefix (default cable-hub): hubs sharing one share <PREFIX>.broadcast")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if args.config is None and args.hub_config is None:
        parser.error("give --config NAVIGATOR_YML, or --hub-config HUB_YML with a server section")
    return args


def main(argv: list[str] | None = None) -> int:
    _skip_unneeded_modules()
    try:
        args = parse_args(argv)
    except SystemExit as exit:  # --help or a usage error; callers get a return code either way
        return exit.code if isinstance(exit.code, int) else 2
    # Imported only now, after the modules above are marked absent.
    from .config import Overrides, load, parse_channel_flag
    from .errors import InputError
    from .log import Logger
    from .server import serve

    try:
        channels = tuple(parse_channel_flag(text, False) for text in args.channel) + tuple(
            parse_channel_flag(text, True) for text in args.signed_channel
        )
        overrides = Overrides(
            hub_config=args.hub_config,
            host=args.host,
            port=args.port,
            public_streams=args.public_streams,
            navigator_protocol=args.navigator_protocol,
            channels=channels,
            broker=args.broker,
            broker_url=args.broker_url,
            broker_prefix=args.broker_prefix,
        )
        config = load(args.config, overrides)
    except InputError as error:
        for problem in error.problems:
            print(f"cable-hub: {problem}", file=sys.stderr)
        return 2
    log = Logger(args.log_format)
    try:
        serve(config, overrides, log)
    except OSError as error:
        log("start_failed", level="error", host=config.host, port=config.port, error=str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
