"""``ensemble``: several separately trained models scored together, each with its own input window.

Members may differ in architecture and in how they read a record (e.g. one trained on 2.5-s crops and scored by the
maximum over sliding windows, one trained on whole 10-s records), which is where an ensemble's gain comes from. The
ensemble therefore takes whole records (its ``ModelInfo.window`` is ``None``) and applies each member's windowing
itself. Members are combined by averaging their record logits (``average="logit"``, the default: a geometric mean of
odds, chosen on PTB-XL fold 9 where it beat averaging probabilities, macro-AUC 0.932 vs 0.929, for the shipped
model) or their probabilities (``average="prob"``). A member may abstain on some labels (spec key ``abstain``: label
indices): each label's logit is then the average over the members that vote on it. Recipes use this to let only
the members that read whole records score statements defined over the whole strip, such as sinus arrhythmia,
which a 2.5-s crop cannot show (see :func:`combine`).
``forward_features`` concatenates the members' window-averaged embeddings. Unlike single models,
``forward(x)`` equals ``forward_head(forward_features(x))`` only when every member reads whole records: members
scored on windows aggregate window *logits* (max or mean), which an averaged embedding cannot reproduce.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ecgfm.models.registry import create, register_model
from ecgfm.models.windowing import aggregate, sliding_windows, windowed_logits

AVERAGES = ("logit", "prob")


class Ensemble(nn.Module):
    """Average of member models' logits (or probabilities); members carry their own window / stride / aggregation."""

    def __init__(self, num_labels: int, in_leads: int, members: list[dict[str, Any]], average: str = "logit"):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if average not in AVERAGES:
            raise ValueError(f"ensemble average must be one of {', '.join(AVERAGES)}, got {average!r}")
        self.average = average
        self.specs = [dict(m) for m in members]
        self.members = nn.ModuleList(
            create(m["arch"], num_labels, in_leads, **m.get("kwargs", {})) for m in self.specs
        )
        for spec in self.specs:
            if spec.get("aggregate", "max") not in ("max", "mean"):
                raise ValueError(f"member aggregate must be max or mean, got {spec.get('aggregate')!r}")
        self.num_labels = num_labels
        self.num_features = sum(m.num_features for m in self.members)
        # (members, labels) weights of the average: 1/voters where a member votes on a label, 0 where it abstains;
        # not persistent: derived from the specs, so checkpoints keep the members' weights only
        self.register_buffer("votes", vote_weights(self.specs, num_labels), persistent=False)

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Record logits of each member, ``[(B, L), ...]``, each member reading ``x`` with its own windows."""
        return [windowed_logits(member, x, spec.get("window"), spec.get("stride"), spec.get("aggregate", "max"))
                for spec, member in zip(self.specs, self.members)]

    def combine_logits(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """The ensemble logit from the members' record logits (each label averaged over the members voting on it)."""
        stacked = torch.stack([l.float() for l in logits])  # (members, B, labels)
        weights = self.votes.unsqueeze(1)  # (members, 1, labels)
        if self.average == "logit":
            return (stacked * weights).sum(0)
        probs = (torch.sigmoid(stacked) * weights).sum(0).clamp(1e-7, 1 - 1e-7)
        return torch.log(probs) - torch.log1p(-probs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine_logits(self.member_logits(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated member embeddings, each averaged over that member's windows: ``(B, num_features)``."""
        feats = []
        for spec, member in zip(self.specs, self.members):
            windows = sliding_windows(x, spec.get("window"), spec.get("stride"))
            features = member.forward_features(windows.flatten(0, 1)).reshape(*windows.shape[:2], -1)
            feats.append(aggregate(features, "mean"))
        return torch.cat(feats, dim=1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Members' heads on their slices of ``features``, combined as in ``forward`` (window aggregation is skipped:
        pass features of one window per record)."""
        parts = torch.split(features, [m.num_features for m in self.members], dim=1)
        if pre_logits:
            return torch.cat([m.forward_head(p, pre_logits=True) for m, p in zip(self.members, parts)], dim=1)
        return self.combine_logits([m.forward_head(p) for m, p in zip(self.members, parts)])

    def reset_classifier(self, num_labels: int) -> None:
        """New outputs for every member; abstentions referred to the old labels, so every member votes again."""
        for member in self.members:
            member.reset_classifier(num_labels)
        self.num_labels = int(num_labels)
        for spec in self.specs:
            spec.pop("abstain", None)
        if isinstance(getattr(self, "arch_kwargs", None), dict) and "members" in self.arch_kwargs:
            self.arch_kwargs = {**self.arch_kwargs, "members": [dict(spec) for spec in self.specs]}
        self.votes = vote_weights(self.specs, self.num_labels).to(self.votes.device)

    def get_classifier(self) -> None:
        return None  # several classifiers; see members


def vote_weights(specs: list[dict[str, Any]], num_labels: int) -> torch.Tensor:
    """``(members, labels)`` averaging weights from the members' ``abstain`` lists; every label needs a voter."""
    votes = torch.ones(len(specs), num_labels)
    for i, spec in enumerate(specs):
        abstain = [int(j) for j in spec.get("abstain", ())]
        if any(not 0 <= j < num_labels for j in abstain):
            raise ValueError(f"member {i} abstains on label indices outside 0..{num_labels - 1}: {abstain}")
        votes[i, abstain] = 0.0
    voters = votes.sum(0)
    if (voters == 0).any():
        raise ValueError(f"labels {torch.nonzero(voters == 0).flatten().tolist()} have no voting member")
    return votes / voters


@register_model
def ensemble(num_labels: int, in_leads: int = 12, members: list[dict[str, Any]] | None = None,
             average: str = "logit") -> Ensemble:
    """Ensemble of members ``[{"arch", "kwargs", "window", "stride", "aggregate"}, ...]`` averaging their logits
    (``average="logit"``) or probabilities (``"prob"``)."""
    return Ensemble(num_labels, in_leads, members or [], average)


def combine(members: list[nn.Module], average: str = "logit", whole_record_labels: Sequence[str] = (),
            **info_changes: Any) -> Ensemble:
    """An :class:`Ensemble` of trained models (each with ``.info``) predicting the same labels from the same input.

    Each member keeps its own window / stride / aggregation; the ensemble's info takes the first member's labels,
    preprocessing and provenance, and sets ``window=None`` (the ensemble windows internally).
    ``whole_record_labels``: statements scored by the members that read whole records alone (members on crops
    abstain on them); ignored when no member reads whole records, and labels the members do not predict are skipped.
    """
    if not members:
        raise ValueError("nothing to combine")
    infos = [m.info for m in members]
    first = infos[0]
    for info in infos[1:]:
        if list(info.labels) != list(first.labels):
            raise ValueError("ensemble members must predict the same labels in the same order")
        if info.preprocess != first.preprocess or info.fs != first.fs:
            raise ValueError("ensemble members must share the preprocessing (same input)")
    specs = [{"arch": info.arch, "kwargs": info.arch_kwargs, "window": info.window, "stride": info.stride,
              "aggregate": info.aggregate} for info in infos]
    routed = sorted(first.labels.index(name) for name in set(whole_record_labels) if name in first.labels)
    if routed and any(spec["window"] is None for spec in specs):
        for spec in specs:
            if spec["window"] is not None:
                spec["abstain"] = routed
    model = create("ensemble", len(first.labels), first.in_leads, members=specs, average=average)
    for target, source in zip(model.members, members):
        target.load_state_dict(source.state_dict())
    model.info = first.replace(arch="ensemble", arch_kwargs=model.arch_kwargs, window=None, stride=None,
                               training={"members": [info.training for info in infos]},
                               metrics={"members": [info.metrics for info in infos]}, thresholds={}, **info_changes)
    return model.eval()


def member(model: Ensemble, index: int = 0) -> nn.Module:
    """Member ``index`` of an ensemble as a stand-alone model with its own info: architecture, window, stride,
    aggregation, training record and metrics (labels and preprocessing are the ensemble's).

    Transfer learning starts from one network: fine-tuning a whole ensemble would multiply the cost by its size.
    """
    if not isinstance(model, Ensemble):
        raise TypeError(f"expected an Ensemble, got {type(model).__name__}")
    if not 0 <= index < len(model.members):
        raise IndexError(f"the ensemble has {len(model.members)} members; no member {index}")
    info, spec = model.info, model.specs[index]
    members_training = (info.training or {}).get("members") or []
    members_metrics = (info.metrics or {}).get("members") or []
    chosen = model.members[index]
    chosen.info = info.replace(
        arch=spec["arch"], arch_kwargs=dict(spec.get("kwargs", {})), window=spec.get("window"),
        stride=spec.get("stride"), aggregate=spec.get("aggregate", "max"),
        training=members_training[index] if index < len(members_training) else {},
        metrics=members_metrics[index] if index < len(members_metrics) else {},
        extra={**info.extra, "ensemble_member": index},
    )
    return chosen
