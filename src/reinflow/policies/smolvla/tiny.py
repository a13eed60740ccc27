"""A tiny random SmolVLM backbone, written offline, so SmolVLA runs with no network.

``write_tiny_vlm(dir)`` writes what LeRobot's ``SmolVLMWithExpertModel`` reads from
``vlm_model_name`` with ``load_vlm_weights=False``: a ``SmolVLMConfig`` (``AutoConfig``), a
``SmolVLMProcessor`` (``AutoProcessor``: image processor + tokenizer) and the tokenizer alone
(``AutoTokenizer``, used by LeRobot's ``TokenizerProcessorStep``). The tokenizer is a word-level
tokenizer trained locally with ``tokenizers`` on the built-in task instructions plus a small
robot vocabulary (unknown words map to ``<unk>``). The VLM weights are random: SmolVLA builds
them from the config, so nothing is downloaded.

``write_tiny_vlm(dir, real_sizes=True)`` writes the public SmolVLM2-500M-Video-Instruct sizes
instead (used by benchmarks/smolvla_speed.py to build the 450M SmolVLA architecture offline).

CLI: ``reinflow smolvla-tiny DIR`` (``reinflow.commands.smolvla_tiny``).
"""

from __future__ import annotations

import json
from pathlib import Path

from reinflow.policies.smolvla.tv_shim import ensure_torchvision

SPECIAL = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "bos_token": "<|im_start|>",
    "eos_token": "<end_of_utterance>",
}
EXTRA_SPECIAL = {  # attributes SmolVLMProcessor / LeRobot read from the tokenizer
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "image_token": "<image>",
    "end_of_utterance_token": "<end_of_utterance>",
    "video_token": "<video>",
}
TASKS = (
    "move the gripper to the green target",
    "push the red cube to the green target",
    "pick up the red cube and lift it",
    "pick up the cube and place it in the box",
    "open the drawer", "close the drawer", "stack the blue block on the red block",
    "grasp the object", "put the lego brick into the transparent box",
)
EXTRA_WORDS = ("left right up down forward back arm robot hand table yellow white black "
               "small large first then move grab release hold rotate turn a an on of")

# Tiny sizes: 2 cameras of 64x64 -> 4 tokens each; the expert is 0.75 x 64 = 48 wide.
TINY_TEXT = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                 max_position_embeddings=512, rope_theta=100000.0, tie_word_embeddings=False)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=64, patch_size=16)
# Public SmolVLM2-500M-Video-Instruct sizes (the backbone of lerobot/smolvla_base).
REAL_TEXT = dict(model_type="llama", hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                 num_attention_heads=15, num_key_value_heads=5, head_dim=64, rms_norm_eps=1e-5,
                 max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=False,
                 vocab_size=49280)
REAL_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   image_size=512, patch_size=16)


def build_tokenizer(extra_texts: tuple[str, ...] = ()):
    """Word-level ``PreTrainedTokenizerFast`` trained on the task strings (lower-cased)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL["unk_token"]))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits()])
    specials = list(dict.fromkeys([*SPECIAL.values(), *EXTRA_SPECIAL.values()]))
    trainer = trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1)
    corpus = [*TASKS, EXTRA_WORDS, "0 1 2 3 4 5 6 7 8 9 . , ! ?", *extra_texts]
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512,
                                   extra_special_tokens=dict(EXTRA_SPECIAL), **SPECIAL)


def vlm_config(text: dict, vision: dict, vocab_size: int, image_token_id: int, pad_token_id: int,
               scale_factor: int):
    from transformers import SmolVLMConfig

    return SmolVLMConfig(text_config={**text, "vocab_size": vocab_size, "pad_token_id": pad_token_id},
                         vision_config=dict(vision), scale_factor=scale_factor,
                         image_token_id=image_token_id, pad_token_id=pad_token_id, tie_word_embeddings=False)


def write_tiny_vlm(directory: str | Path, extra_texts: tuple[str, ...] = (), real_sizes: bool = False,
                   patch_size: int | None = None) -> Path:
    """Write config + processor + tokenizer of a tiny random SmolVLM into ``directory``.

    ``real_sizes=True`` writes the public SmolVLM2-500M sizes instead (still random weights and the
    small local tokenizer: for speed/memory benchmarks of the real architecture, offline).
    ``patch_size`` (default 16) sets the vision tower's patch side: a frame becomes
    ``(image_size / patch_size / 2) ** 2`` tokens (2x2 pixel shuffle), 4 at 16 px and 16 at 8 px."""
    vision = dict(REAL_VISION if real_sizes else TINY_VISION)
    scale = 4 if real_sizes else 2  # the connector's pixel shuffle (SmolVLM2-500M: 4)
    if patch_size is not None:
        if patch_size < 1 or vision["image_size"] % (scale * patch_size):
            raise ValueError(f"patch_size={patch_size}: must divide image_size / {scale} = "
                             f"{vision['image_size'] // scale}")
        vision["patch_size"] = int(patch_size)
    ensure_torchvision()
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(tuple(extra_texts))
    image_id = tokenizer.convert_tokens_to_ids(EXTRA_SPECIAL["image_token"])
    text = REAL_TEXT if real_sizes else TINY_TEXT
    vocab = REAL_TEXT["vocab_size"] if real_sizes else len(tokenizer)
    cfg = vlm_config(text, vision, vocab, image_id, tokenizer.pad_token_id, scale)
    cfg.save_pretrained(out)
    size = vision["image_size"]
    image_processor = SmolVLMImageProcessor(do_resize=True, size={"longest_edge": size},
                                            do_image_splitting=False, max_image_size={"longest_edge": size})
    image_seq_len = (size // vision["patch_size"]) ** 2 // cfg.scale_factor**2
    try:
        from transformers import SmolVLMVideoProcessor
        video = SmolVLMVideoProcessor(size={"longest_edge": size}, max_image_size={"longest_edge": size})
    except (ImportError, ValueError):  # pragma: no cover - older transformers
        video = None
    kwargs = {"video_processor": video} if video is not None else {}
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 image_seq_len=image_seq_len, **kwargs)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "reinflow_tiny.json").write_text(json.dumps(
        {"what": "random SmolVLM written by reinflow smolvla-tiny", "real_sizes": real_sizes,
         "text": text, "vision": vision, "vocab": len(tokenizer)}, indent=2))
    return out
