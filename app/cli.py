"""``pocket-studio``: one command line for both engines (the studio itself is ``app.py``).

Each engine's commands are registered by a front-end module (``cli_3d``: scene, stylize, reconstruct;
``cli_generate``: generate, train, distill, eval; ``cli_video``: video, search-sandwich; ``cli_export``: export-coreml, export-coreai); this module owns what they share: one error line and exit 2 for every
usage or input error, values that may start with ``-``, and the catch-all that keeps tracebacks behind ``-v``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from . import cli_3d, cli_export, cli_generate, cli_video

logger = logging.getLogger("pocket_studio")


class Parser(argparse.ArgumentParser):
    """Every usage error ends with the same ``pocket-studio: error: ...`` line (and exit 2) as a runtime one."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"pocket-studio: error: {self.prog.removeprefix('pocket-studio').strip()}"
                     f"{': ' if self.prog != 'pocket-studio' else ''}{message}\n")


# options whose value may start with '-' (``--box -1,-1,0,1,1,2``, ``--lr -inf``): argparse would take it for an
# option and say "expected one argument" instead of what is wrong with the value
SIGNED_VALUES = ("--box", "--click", "--lr", "--style-weight", "--content-weight", "--seed", "--iters", "--size",
                 "--steps", "--guidance", "--width-mult", "--n")


def join_signed_values(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] in SIGNED_VALUES and i + 1 < len(argv) and re.match(r"-(\d|\.|inf|nan)", argv[i + 1], re.I):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="pocket-studio", description="Pocket Studio: per-object 3D stylization and compact generators.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    cli_3d.register(sub)
    cli_generate.register(sub)
    cli_video.register(sub)
    cli_export.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    head, passthrough = cli_generate.split_passthrough(list(sys.argv[1:] if argv is None else argv))
    try:  # ``train KIND ...``: the training script parses its own flags
        args = parser().parse_args(join_signed_values(head))
    except SystemExit as exit_:  # usage errors (already printed) and --help, as a return code
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args) if passthrough is None else args.run(args, passthrough)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except (ValueError, OSError) as err:
        print(f"pocket-studio: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print("pocket-studio: error: out of memory: try a smaller size or fewer images", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - one error line, the traceback only with -v
        logger.debug("unexpected error", exc_info=True)
        print(f"pocket-studio: error: unexpected {type(err).__name__}: {err} (run with -v for the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
