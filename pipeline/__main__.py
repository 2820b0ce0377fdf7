"""Command line for one video without the queue: `python -m pipeline render --artist ...`.

It is what benchmarks and debugging use; it prints the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

from pipeline.artists import find_artist, sync_repository
from pipeline.edit.frame_format import ASPECT_RATIOS
from pipeline.errors import StudioError
from pipeline.models import CAPTION_LENGTHS, LYRICS_MODES, RunPlan
from pipeline.run_video import run_video
from pipeline.settings import get_settings
from pipeline.templates import load_template


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="render one video and print the result as JSON")
    render.add_argument("--artist", required=True, help="artist account id or slug")
    render.add_argument("--template", default=None, help="template id (omit for malleable mode)")
    render.add_argument("--caption-length", default="none", choices=list(CAPTION_LENGTHS))
    render.add_argument("--lyrics", default=None, choices=list(LYRICS_MODES),
                        help="lyrics on screen (default: the template's)")
    render.add_argument("--aspect-ratio", default="9:16", choices=list(ASPECT_RATIOS))
    render.add_argument("--lipsync", action="store_true")
    render.add_argument("--upscale", action="store_true")
    render.add_argument("--song", action="append", default=[], help="song slug or URL (repeatable)")
    render.add_argument("--image", action="append", default=[], help="face guide image URL (repeatable)")
    render.add_argument("--seed", type=int, default=None)
    render.add_argument("--out", type=Path, default=None, help="output folder (default DATA_DIR/runs/<id>)")
    render.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    try:
        if args.template:
            load_template(args.template)
        artist = sync_repository(find_artist(settings, args.artist), settings)
        run_id = "cli_" + secrets.token_hex(6)
        plan = RunPlan(
            run_id=run_id, artist=artist, template_id=args.template, caption_length=args.caption_length,
            lipsync=args.lipsync, upscale=args.upscale, songs=args.song, images=args.image,
            seed=args.seed if args.seed is not None else secrets.randbelow(2**31),
            out_dir=(args.out.resolve() if args.out else settings.runs_dir / run_id),
            lyrics=args.lyrics, aspect_ratio=args.aspect_ratio,
        )

        def progress(step: str, percent: float) -> None:
            if not args.quiet:
                print(f"{percent:5.1f}%  {step}", file=sys.stderr, flush=True)

        result = run_video(plan, settings, progress=progress)
    except StudioError as exc:
        print(json.dumps({**exc.to_dict(), "stage": exc.stage}), file=sys.stderr)
        return 2
    print(json.dumps({"status": "success", "runId": plan.run_id, "video": str(result.video_path),
                      "poster": str(result.poster_path), "meta": str(result.meta_path), "output": result.output},
                     indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
