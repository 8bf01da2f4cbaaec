"""The study's differences over pre-training seeds, as `umae demo` quotes them (report and terminal)."""

from __future__ import annotations

from umae_eval.commands.demo import study_preface
from umae_eval.pipeline.seeds import seed_difference
from umae_eval.report.study import seed_frame, seed_lines


def _seeds() -> dict:
    rows = [seed_difference("linear_accuracy", [0, 1, 2], [46.2, 45.4, 47.2], [45.9, 43.4, 44.0]).to_json(),
            seed_difference("knn_accuracy@20", [0, 1, 2], [40.5, 39.1, 38.9], [49.1, 46.4, 46.6]).to_json(),
            seed_difference("attentive_accuracy", [0], [68.13], [68.38]).to_json()]
    return {"source": "reports/x/seeds", "interval": "Student t over pre-training seeds", "rows": rows}


def test_seed_table_and_lines_carry_the_t_interval_and_the_verdict() -> None:
    seeds = _seeds()
    frame = seed_frame(seeds["rows"])
    assert list(frame["measure"]) == ["linear probe", "kNN k=20", "attentive probe (EP)"]
    # linear: diffs -0.3, -2.0, -3.2 -> mean -1.83, sd 1.457, t(2) 4.303 -> half width 3.62
    assert frame["U-MAE − MAE [95% t interval over seeds]"][0] == "-1.8 [-5.5, 1.8]"
    assert frame["MAE, mean (sd)"][0] == "46.3 (0.9)"
    assert frame["verdict"][0] == "within seed-to-seed noise (3 seeds; the interval covers 0)"
    lines = seed_lines(seeds)
    assert lines[0].startswith("The full study over 3 pre-training seeds (reports/x/seeds)")
    assert "[95% interval: Student t over pre-training seeds]" in lines[0]
    assert lines[1] == ("  linear probe: -1.8 [-5.5, 1.8] (MAE 46.3, U-MAE 44.4): "
                        "within seed-to-seed noise (3 seeds; the interval covers 0)")
    assert lines[2].startswith("  kNN k=20: +7.9 [6.2, 9.5]")
    assert lines[2].endswith("U-MAE above MAE across seeds (t interval over 3 seeds excludes 0)")
    # one seed: no interval to show, and the verdict says so
    assert frame["U-MAE − MAE [95% t interval over seeds]"][2] == "+0.2 (one seed)"
    assert lines[3] == ("  attentive probe (EP): +0.2 (one seed) (MAE 68.1, U-MAE 68.4): one seed: U-MAE - MAE = "
                        "+0.25; seed-to-seed variation not measured")
    assert seed_lines({}) == [] and seed_lines({"rows": []}) == []


def test_demo_preface_shows_the_seed_table_first_and_says_which_seed_the_sample_is() -> None:
    numbers = {"linear": {"MAE": {"accuracy": 46.05, "ci95": [45.1, 47.0]}}}
    with_seeds = study_preface(1000, {"summary": "s", "numbers": numbers, "seeds": _seeds()})
    assert with_seeds.seed_table is not None and len(with_seeds.seed_table) == 3
    assert "Over 3 pre-training seeds" in with_seeds.seed_caption
    assert "seed 0 of the study's 3" in with_seeds.check
    assert with_seeds.table is not None and with_seeds.table_caption.startswith("Seed 0")
    one = study_preface(1000, {"summary": "s", "numbers": numbers})
    assert one.seed_table is None and "seed 0 of the study's 1" in one.check
    # an unreadable study.json: one sentence pointing at the study, no table, nothing raised
    bare = study_preface(1000, {})
    assert bare.table is None and "reports/cifar10-mae-vs-umae-cpu" in bare.text


def _finetune() -> dict:
    import numpy as np

    from umae_eval.pipeline.finetune_study import FinetuneRun, compare_finetune_runs, comparison_json

    n = 1000
    base = np.arange(n) < 600  # 60.0 %

    def moved(k: int) -> np.ndarray:
        c = base.copy()
        c[600:600 + k] = True
        return c

    runs = [FinetuneRun("a0", "MAE", "full", 0, base), FinetuneRun("a1", "MAE", "full", 1, moved(10)),
            FinetuneRun("b0", "U-MAE", "full", 0, moved(4)), FinetuneRun("b1", "U-MAE", "full", 1, moved(8)),
            FinetuneRun("c0", "U-MAE", "last 2 blocks", 0, base),
            FinetuneRun("d0", "MAE", "last 2 blocks", 0, base)]
    rows = comparison_json(compare_finetune_runs(runs, n_boot=200))["study_rows"]
    return {"source": "reports/x/finetune", "recipe": "cpu-demo, 4 epochs", "rows": rows}


def test_finetune_table_and_lines_give_both_intervals_and_say_what_they_cover() -> None:
    from umae_eval.report.study import finetune_frame, finetune_lines

    ft = _finetune()
    frame = finetune_frame(ft["rows"])
    assert list(frame["fine-tuning"]) == ["full", "last 2 blocks"]
    full = frame.iloc[0]
    # MAE 60.0 / 61.0, U-MAE 60.4 / 60.8: means 60.5 and 60.6, diffs +0.4 and -0.2 -> +0.1,
    # t(1) 12.706 x sd 0.424 / sqrt 2 = 3.81
    assert (full["pair"], full["A top-1"], full["B top-1"]) == ("U-MAE − MAE", "60.5", "60.6")
    assert full["B − A"] == "+0.1"
    assert full["[t, fine-tuning seeds]"] == "[-3.7, 3.9]"
    assert frame.iloc[1]["[t, fine-tuning seeds]"] == "n/a"
    assert frame.iloc[1]["B − A"] == "0.0" and frame.iloc[1]["[bootstrap, test images]"] == "[0.0, 0.0]"
    lines = finetune_lines(ft)
    assert lines[0].startswith("Fine-tuning of the seed-0 encoders (reports/x/finetune, cpu-demo, 4 epochs)")
    assert lines[1].startswith("  full, U-MAE − MAE: +0.1 [") and "; [-3.7, 3.9] (MAE 60.5, U-MAE 60.6; 2 seed(s))" \
        in lines[1]
    assert lines[1].endswith("within noise (test images and 2 fine-tuning seeds)")
    assert finetune_lines({}) == []
    numbers = {"linear": {"MAE": {"accuracy": 46.05, "ci95": [45.1, 47.0]}}}
    preface = study_preface(1000, {"summary": "s", "numbers": numbers, "seeds": _seeds(), "finetune": ft})
    assert preface.finetune_table is not None and len(preface.finetune_table) == 2
    assert "Neither covers pre-training seeds" in preface.finetune_caption
    assert "of the seed-0 encoders, cpu-demo" in preface.finetune_caption  # no random-init run in these rows
    ft["rows"][1]["a"] = "random init"
    assert finetune_lines(ft)[0].startswith("Fine-tuning of the seed-0 encoders and a random init (reports/x/")
    with_random = study_preface(1000, {"summary": "s", "numbers": numbers, "finetune": ft})
    assert "of the seed-0 encoders and a random init, cpu-demo" in with_random.finetune_caption
    assert study_preface(1000, {"summary": "s", "numbers": numbers}).finetune_table is None
