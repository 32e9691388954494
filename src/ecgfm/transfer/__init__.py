"""Transfer learning: adapt a foundation model to labels it never saw, and measure what pre-training is worth.

- :mod:`~ecgfm.transfer.finetune`: :func:`~ecgfm.transfer.finetune.finetune`, the one entry point (strategies,
  validation, K-fold CV refit, the probe-only rule, the saved model);
- :mod:`~ecgfm.transfer.config`: :class:`~ecgfm.transfer.config.FinetuneConfig` (composes
  :class:`~ecgfm.training.TrainConfig`) and :class:`~ecgfm.transfer.config.CompareConfig`;
- :mod:`~ecgfm.transfer.probe`: the linear probe on frozen embeddings, alone or as the network's new head;
- :mod:`~ecgfm.transfer.stages`: staged fine-tuning (warm-up, gradual unfreezing, discriminative rates) run with
  :func:`ecgfm.training.fit`;
- :mod:`~ecgfm.transfer.splits`: patient-level splits (held-out tests, nested training sets, inner validation);
- :mod:`~ecgfm.transfer.compare`, :mod:`~ecgfm.transfer.analysis`, :mod:`~ecgfm.transfer.report`: the fine-tuning
  versus scratch versus embeddings comparison (running and resuming cells, statistics, report files).
"""
