"""Command line of the hub: `cable-hub`, `python -m hub`, `orchestrate hub`."""

from __future__ import annotations

import argparse
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cable-hub",
        description="A lean Action Cable / Navigator-cable compatible WebSocket hub configured from navigator.yml.",
    )
    parser.add_argument("--config", required=True, metavar="NAVIGATOR_YML", help="navigator.yml (server.listen, health check, cable.*)")
    parser.add_argument("--hub-config", metavar="HUB_YML", help="hub options (default: hub.yml beside navigator.yml, if present)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; use 0.0.0.0 to serve other hosts)")
    parser.add_argument("--port", type=int, help="port to bind, overriding server.listen (0 picks a free port)")
    parser.add_argument("--public-streams", action=argparse.BooleanOptionalAction, default=None, help="allow unsigned streams: $pubsub stream_name, and any stream over Navigator's protocol")
    parser.add_argument("--channel", action="append", default=[], metavar="NAME=STREAM", help="map an Action Cable channel to a stream template, e.g. ScoresChannel=live-scores-{database}")
    parser.add_argument("--signed-channel", action="append", default=[], metavar="NAME=STREAM", help="like --channel, but the subscription must carry a matching signed_stream_name")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    _skip_unneeded_modules()
    try:
        args = parse_args(argv)
    except SystemExit as exit:  # --help or a usage error; callers get a return code either way
        return exit.code if isinstance(exit.code, int) else 2
    # Imported only now, after the modules above are marked absent.
    import asyncio

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
            channels=channels,
        )
        config = load(args.config, overrides)
    except InputError as error:
        for problem in error.problems:
            print(f"cable-hub: {problem}", file=sys.stderr)
        return 2
    log = Logger(args.log_format)
    try:
        asyncio.run(serve(config, overrides, log))
    except OSError as error:
        log("start_failed", level="error", host=config.host, port=config.port, error=str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
