"""See what an MAE checkpoint does: reconstructions that say which statistics they used,
attention maps and attention statistics.

Modules: :mod:`.mae_model` (encoder + decoder from a parsed checkpoint), :mod:`.masks` (seeded
masks, MAE's rule), :mod:`.normpix` (was it trained on normalised pixels; un-normalising a
prediction), :mod:`.reconstruct` (the four panels and the masked-patch MSE), :mod:`.attention`
(attention read from ``qkv`` by hooks, [CLS] maps, rollout), :mod:`.attention_stats` (mean
attention distance, entropy, NMI, bootstrap intervals), :mod:`.run` (everything for a list of
checkpoints and images, as :class:`~umae_eval.visual.run.VisualResults`).
"""
