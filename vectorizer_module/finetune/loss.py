"""The symmetric CLIP contrastive loss, with a learnable temperature.

Captions that are the same text are all positives of each other's images: with many short captions
("a red circle") a batch often holds the same text twice, and calling one of them a negative would teach
the model to tell apart two identical queries. With all captions distinct this is CLIP's loss exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the temperature so that logits stay below 100


def positive_targets(caption_ids: torch.Tensor) -> torch.Tensor:
    """Row-normalised targets: pair ``i`` and pair ``j`` are positives when their captions are equal."""
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def clip_loss(
    text_embeds: torch.Tensor,
    image_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    caption_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of the text→image and image→text cross-entropies over the batch's similarity logits.
    Row ``i`` of both embeddings is one pair; ``logit_scale`` is the log of the inverse temperature."""
    text = F.normalize(text_embeds.float(), dim=-1)
    image = F.normalize(image_embeds.float(), dim=-1)
    logits = logit_scale.float().exp() * text @ image.T
    if caption_ids is None:
        targets = torch.arange(len(text), device=text.device)
    else:
        targets = positive_targets(caption_ids.to(text.device))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
