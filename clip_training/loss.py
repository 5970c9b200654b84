"""The symmetric CLIP contrastive loss, with a learnable temperature.

Captions that are the same text are all positives of each other's images: with many short captions
("a red circle") a batch often holds the same text twice, and calling one of them a negative would teach
the model to tell apart two identical queries. With all captions distinct this is CLIP's loss exactly.

With attributes (``positives`` from ``attribute_positives``), a caption is a positive of every image in
the batch that has all the attributes it names, whatever its wording: "a photo of a red circle" and "a
red circle" describe each other's images too, and with many templates such pairs are no rarer than
identical texts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the temperature so that logits stay below 100
UNNAMED = -1  # attribute code of a caption that does not name it, or an image that does not have it


def attribute_positives(caption_codes: torch.Tensor, image_codes: torch.Tensor) -> torch.Tensor:
    """(captions x images) bool: the image has every attribute the caption names. Both are (n, attributes)
    integer codes, ``UNNAMED`` where a caption names no value or an image has none."""
    named = caption_codes[:, None, :] != UNNAMED
    equal = caption_codes[:, None, :] == image_codes[None, :, :]
    return (equal | ~named).all(dim=-1)


def clip_loss(
    text_embeds: torch.Tensor,
    image_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    caption_ids: torch.Tensor | None = None,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of the text→image and image→text cross-entropies over the batch's similarity logits.
    Row ``i`` of both embeddings is one pair; ``logit_scale`` is the log of the inverse temperature.
    ``positives`` (text x image, bool) adds positives beyond each pair and its identical captions."""
    text = F.normalize(text_embeds.float(), dim=-1)
    image = F.normalize(image_embeds.float(), dim=-1)
    logits = logit_scale.float().exp() * text @ image.T
    if caption_ids is None and positives is None:
        targets = torch.arange(len(text), device=text.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    n = len(text)
    ids = torch.arange(n, device=text.device) if caption_ids is None else caption_ids.to(text.device)
    match = ids[:, None] == ids[None, :]
    if positives is not None:
        match = match | positives.to(text.device)
    match = match.float()
    to_images = match / match.sum(dim=1, keepdim=True)
    to_texts = match.T / match.T.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, to_images) + F.cross_entropy(logits.T, to_texts)) / 2
