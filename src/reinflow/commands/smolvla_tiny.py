"""``reinflow smolvla-tiny DIR``: write a tiny random SmolVLM backbone (offline) for SmolVLA tests."""

from __future__ import annotations

import argparse

from reinflow.cli_args import parse_argparse


def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="reinflow smolvla-tiny",
                                 description="Write a tiny random SmolVLM backbone (offline) for SmolVLA tests. "
                                             "Train with: reinflow train --policy smolvla --vlm-path DIR")
    ap.add_argument("dir", help="output folder")
    ap.add_argument("--text", action="append", default=[], help="extra text to add to the tokenizer vocabulary")
    ap.add_argument("--patch-size", type=int, default=None,
                    help="vision patch side in pixels (default 16: 4 tokens per 64x64 frame; 8: 16 tokens)")
    args = parse_argparse(ap, argv)
    from reinflow.policies.smolvla.tiny import write_tiny_vlm  # needs LeRobot (after --help, which does not)
    try:
        out = write_tiny_vlm(args.dir, tuple(args.text), patch_size=args.patch_size)
    except ValueError as exc:
        ap.error(str(exc).replace("patch_size=", "--patch-size="))
    print(f"wrote tiny SmolVLM backbone to {out}")
    return 0
