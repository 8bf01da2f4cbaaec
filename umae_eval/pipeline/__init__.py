"""The one evaluation pipeline below the analysis commands.

    analysis (checkpoints, images, features)
      -> probing (mean classifier / linear / kNN, with test predictions)
      -> collapse (spectrum, masked-view geometry, t-SNE/UMAP maps)
      -> curves (metrics.jsonl of the checkpoint's run)
      -> summary (bootstrap intervals, paired differences, the paper's numbers)
      -> results.AnalysisResults  (frames: the CSV tables)

Example::

    from umae_eval.analysis import load_data, load_subjects
    from umae_eval.pipeline import AnalysisConfig, run_analysis

    subjects = load_subjects([Path("mae.pth"), Path("u-mae.pth")])
    data = load_data("demo")
    results = run_analysis(subjects, data, AnalysisConfig(embed=("tsne",)), spec="demo")
    results.summary.sentences()
"""

from umae_eval.pipeline.run import AnalysisConfig, AnalysisResults, CheckpointResult, run_analysis, timed

__all__ = ["AnalysisConfig", "AnalysisResults", "CheckpointResult", "run_analysis", "timed"]
