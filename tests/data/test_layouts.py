"""Dataset layouts as people download them: miniature Tiny ImageNet-200 and ImageNet (Kaggle)
trees with real JPEGs and the real metadata formats, as folders and as .tar.gz, checked image by
image; ImageFolder symlink loops; malformed layouts and their one-line messages."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ckpt_factory as CF
from umae_eval.cli import main
from umae_eval.data import load_dataset
from umae_eval.data.layouts import NoLayout, find_listing
from umae_eval.data.walk import walk_tree
from umae_eval.errors import UmaeError

# Every image gets its own flat colour (JPEG keeps a flat colour within a few levels), so a
# decoded image says which file it came from and its label can be checked against the file's.
_LEVELS = (20, 60, 100, 140, 180, 220)
_PALETTE = [(r, g, b) for r in _LEVELS for g in _LEVELS for b in _LEVELS]


class Tree:
    """Files written so far and, per image, its colour and the wnid it belongs to."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.colour: dict[str, tuple[int, int, int]] = {}
        self.wnid: dict[str, str | None] = {}

    def image(self, rel: str, wnid: str | None, size: tuple[int, int] = (64, 64), mode: str = "RGB") -> None:
        colour = _PALETTE[len(self.colour) * 7 % len(_PALETTE)]
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        im = Image.new("RGB", size, colour)
        if mode == "L":  # Tiny ImageNet and ImageNet hold some grayscale JPEGs
            im = im.convert("L")
            grey = im.getpixel((0, 0))
            colour = (grey, grey, grey)
        im.save(path, "JPEG", quality=95)
        self.colour[rel] = colour
        self.wnid[rel] = wnid

    def text(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def which(self, img: np.ndarray) -> str:
        """The file whose colour the decoded image ``(H, W, 3)`` has."""
        mean = img.reshape(-1, 3).mean(0)
        rel, colour = min(self.colour.items(), key=lambda kv: np.abs(mean - kv[1]).sum())
        assert np.abs(mean - colour).max() < 8, (rel, mean, colour)
        return rel


# The real words.txt holds 82,115 wnids; these lines are copied in its format (wnid TAB synonyms).
TINY_WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n01629819": "European fire salamander, Salamandra salamandra",
    "n02124075": "Egyptian cat",
    "n00001740": "entity",
    "n02085620": "Chihuahua",
}
TINY_WNIDS = ["n02124075", "n01443537", "n01629819"]  # wnids.txt is not sorted


def make_tiny(root: Path, *, val_per_class: int = 3, test_images: int = 4) -> Tree:
    """``tiny-imagenet-200/`` exactly as the zip unpacks, with 3 classes instead of 200."""
    t = Tree(root / "tiny-imagenet-200")
    t.text("wnids.txt", "".join(f"{w}\n" for w in TINY_WNIDS))
    t.text("words.txt", "".join(f"{w}\t{s}\n" for w, s in TINY_WORDS.items()))
    for k, wnid in enumerate(TINY_WNIDS):
        boxes = []
        for i in range(4):
            t.image(f"train/{wnid}/images/{wnid}_{i}.JPEG", wnid, mode="L" if (k, i) == (1, 2) else "RGB")
            boxes.append(f"{wnid}_{i}.JPEG\t{i}\t{2 * i}\t{40 + i}\t{50 + i}\n")
        t.text(f"train/{wnid}/{wnid}_boxes.txt", "".join(boxes))
    lines = []
    for j in range(val_per_class * len(TINY_WNIDS)):
        wnid = TINY_WNIDS[(j * 2) % len(TINY_WNIDS)]  # classes interleaved, as in the real file
        t.image(f"val/images/val_{j}.JPEG", wnid)
        lines.append(f"val_{j}.JPEG\t{wnid}\t{j}\t{j + 1}\t{j + 40}\t{j + 50}\n")
    t.text("val/val_annotations.txt", "".join(lines))
    for j in range(test_images):
        t.image(f"test/images/test_{j}.JPEG", None)
    return t


# LOC_synset_mapping.txt lines as in the Kaggle download (wnid SPACE synonyms); the two cranes
# (bird, machine) share their first synonym in the real file too.
KAGGLE_SYNSETS = {
    "n01440764": "tench, Tinca tinca",
    "n01443537": "goldfish, Carassius auratus",
    "n02012849": "crane",
    "n03126707": "crane",
}
KAGGLE_TOP = "imagenet-object-localization-challenge"


def make_kaggle(root: Path, *, sizes: bool = True) -> Tree:
    """The Kaggle ImageNet download with 4 classes; images of several sizes, one grayscale."""
    t = Tree(root / KAGGLE_TOP)
    t.text("LOC_synset_mapping.txt", "".join(f"{w} {s}\n" for w, s in KAGGLE_SYNSETS.items()))
    t.text("LOC_sample_submission.csv", "ImageId,PredictionString\nILSVRC2012_test_00000001,n01440764\n")
    wnids = list(KAGGLE_SYNSETS)
    train_rows = []
    for k, wnid in enumerate(wnids):
        for i in range(3):
            size = (40 + 8 * i, 30 + 4 * k) if sizes else (32, 32)
            t.image(f"ILSVRC/Data/CLS-LOC/train/{wnid}/{wnid}_{1000 + i}.JPEG", wnid, size,
                    mode="L" if (k, i) == (2, 1) else "RGB")
            train_rows.append(f"{wnid}_{1000 + i},{wnid} 1 2 30 25 \n")
    t.text("LOC_train_solution.csv", "ImageId,PredictionString\n" + "".join(train_rows))
    rows = []
    for j in range(1, 10):
        wnid = wnids[(j * 3) % len(wnids)]
        t.image(f"ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_{j:08d}.JPEG", wnid, (36, 28) if sizes else (32, 32))
        other = wnids[(j + 1) % len(wnids)]  # a second box of another class: only the first token counts
        rows.append(f"ILSVRC2012_val_{j:08d},{wnid} 10 12 30 28 {other} 1 1 5 5 \n")
    t.text("LOC_val_solution.csv", "ImageId,PredictionString\n" + "".join(reversed(rows)))
    t.text("ILSVRC/Annotations/CLS-LOC/val/ILSVRC2012_val_00000001.xml", "<annotation></annotation>\n")
    t.text("ILSVRC/ImageSets/CLS-LOC/train_cls.txt", "n01440764/n01440764_1000 1\n")
    for j in range(1, 4):
        t.image(f"ILSVRC/Data/CLS-LOC/test/ILSVRC2012_test_{j:08d}.JPEG", None)
    return t


def _tar_gz(folder: Path, out: Path, arcname: str) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        tf.add(folder, arcname=arcname)
    return out


def _check_labels(t: Tree, x: np.ndarray, y: np.ndarray, class_ids: list[str], prefix: str) -> list[str]:
    """Each decoded image is one of the tree's files under ``prefix``, and carries its wnid's label."""
    seen = []
    for img, label in zip(x, y):
        rel = t.which(img)
        assert rel.startswith(prefix), rel
        assert class_ids[label] == t.wnid[rel], rel
        seen.append(rel)
    assert len(set(seen)) == len(seen)
    return seen


# --------------------------------------------------------------------------------------------
# Tiny ImageNet-200
# --------------------------------------------------------------------------------------------


def test_tiny_imagenet_folder_and_tarball(tmp_path: Path) -> None:
    t = make_tiny(tmp_path / "dl")
    archive = _tar_gz(t.root, tmp_path / "tiny-imagenet-200.tar.gz", "tiny-imagenet-200")
    folder = load_dataset(t.root)
    packed = load_dataset(archive)
    wnids = sorted(TINY_WNIDS)
    for ds in (folder, packed):
        assert ds.class_ids == wnids
        assert ds.class_names == [TINY_WORDS[w].split(",")[0] for w in wnids]
        assert ds.class_names == ["goldfish", "European fire salamander", "Egyptian cat"]
        assert len(ds.y_train) == 12 and len(ds.y_test) == 9  # val, not the 4 unlabelled test images
        train = _check_labels(t, ds.x_train, ds.y_train, ds.class_ids, "train/")
        val = _check_labels(t, ds.x_test, ds.y_test, ds.class_ids, "val/images/")
        assert set(train) == {r for r in t.wnid if r.startswith("train/")}
        assert set(val) == {r for r in t.wnid if r.startswith("val/")}
        assert list(ds.y_test) == sorted(ds.y_test)  # by label, then file name
        assert any(n.startswith("skipped the unlabeled test/ (4 images)") for n in ds.notes), ds.notes
    grey = ds.x_train[[t.which(im) for im in ds.x_train].index("train/n01443537/images/n01443537_2.JPEG")]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert folder.format == "imagefolder" and packed.format == "imagefolder-tar"
    np.testing.assert_array_equal(folder.x_test, packed.x_test)
    assert folder.fingerprint == packed.fingerprint


def test_tiny_imagenet_listing_fields(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    files = [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*")) if p.is_file()]
    listing = find_listing(files, lambda n: (tmp_path / n).read_text(), where="dl")
    assert listing.layout == "tiny-imagenet" and listing.root == "tiny-imagenet-200"
    assert listing.test_split == "val"
    by_name = dict(listing.test)
    for rel, wnid in t.wnid.items():
        if rel.startswith("val/"):
            assert listing.class_ids[by_name[f"tiny-imagenet-200/{rel}"]] == wnid
    assert listing.notes == [
        "skipped the unlabeled test/ (4 images): no class folders and no test/test_annotations.txt",
        "val labels from tiny-imagenet-200/val/val_annotations.txt (9 images)",
        "class names from tiny-imagenet-200/words.txt (3 of 3 classes)",
    ]


def test_tiny_imagenet_with_val_sorted_into_folders_gives_the_same_data(tmp_path: Path) -> None:
    """Layout (d): the popular preprocessing that moves val images into val/<wnid>/."""
    t = make_tiny(tmp_path / "a")
    flat = load_dataset(t.root)
    for rel, wnid in list(t.wnid.items()):
        if rel.startswith("val/images/"):
            dst = t.root / "val" / str(wnid) / rel.rsplit("/", 1)[1]
            dst.parent.mkdir(exist_ok=True)
            os.replace(t.root / rel, dst)
    (t.root / "val" / "images").rmdir()
    (t.root / "val" / "val_annotations.txt").unlink()
    sorted_val = load_dataset(t.root)
    assert sorted_val.class_names == flat.class_names
    np.testing.assert_array_equal(sorted_val.x_test, flat.x_test)
    np.testing.assert_array_equal(sorted_val.y_test, flat.y_test)
    assert sorted_val.fingerprint == flat.fingerprint


# --------------------------------------------------------------------------------------------
# ImageNet, Kaggle layout
# --------------------------------------------------------------------------------------------


def test_imagenet_kaggle_folder_and_tarball(tmp_path: Path) -> None:
    t = make_kaggle(tmp_path / "dl")
    archive = _tar_gz(t.root, tmp_path / "imagenet.tar.gz", KAGGLE_TOP)
    wnids = sorted(KAGGLE_SYNSETS)
    for ds in (load_dataset(t.root, decode_size=16), load_dataset(archive, decode_size=16)):
        assert ds.class_ids == wnids
        assert ds.class_names == ["tench", "goldfish", "crane (n02012849)", "crane (n03126707)"]
        assert ds.x_train.shape == (12, 16, 16, 3) and ds.x_test.shape == (9, 16, 16, 3)
        _check_labels(t, ds.x_train, ds.y_train, ds.class_ids, "ILSVRC/Data/CLS-LOC/train/")
        val = _check_labels(t, ds.x_test, ds.y_test, ds.class_ids, "ILSVRC/Data/CLS-LOC/val/")
        assert len(val) == 9
        assert any("skipped the unlabeled test/ (3 images)" in n for n in ds.notes)
        assert any("1 class names are shared by several ids (crane)" in n for n in ds.notes)


def test_imagenet_kaggle_listing_fields(tmp_path: Path) -> None:
    make_kaggle(tmp_path)
    files = [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*")) if p.is_file()]
    listing = find_listing(files, lambda n: (tmp_path / n).read_text(), where="x")
    assert (listing.layout, listing.root, listing.test_split) == ("imagenet-kaggle", KAGGLE_TOP, "val")
    assert listing.test[0] == (f"{KAGGLE_TOP}/ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000004.JPEG", 0)
    assert f"val labels from {KAGGLE_TOP}/LOC_val_solution.csv (9 images)" in listing.notes


def test_kaggle_folder_pointed_at_cls_loc_asks_for_the_labels(tmp_path: Path) -> None:
    t = make_kaggle(tmp_path, sizes=False)
    with pytest.raises(UmaeError, match=r"CLS-LOC/val holds 9 images but no labels \(no class folders, no "
                                        r"val/val_annotations.txt, no LOC_val_solution.csv above it\); sort them "
                                        r"into val/<class>/ folders, or point umae at the folder that also "
                                        r"holds the labels$"):
        load_dataset(t.root / "ILSVRC" / "Data" / "CLS-LOC")


# --------------------------------------------------------------------------------------------
# Evaluation split choice, malformed layouts
# --------------------------------------------------------------------------------------------


def test_unlabeled_test_without_val_is_refused(tmp_path: Path) -> None:
    t = Tree(tmp_path)
    t.image("train/a/1.png", "a", (8, 8))
    t.image("test/1.png", None, (8, 8))
    t.image("test/2.png", None, (8, 8))
    with pytest.raises(UmaeError, match=r"test holds 2 images but no labels \(no class folders, no "
                                        r"test/test_annotations.txt\); sort them into test/<class>/"):
        load_dataset(tmp_path)


def test_labelled_test_is_preferred_to_val(tmp_path: Path) -> None:
    t = Tree(tmp_path)
    for rel in ("train/a/1.jpg", "train/b/2.jpg", "test/b/3.jpg", "val/a/4.jpg"):
        t.image(rel, rel.split("/")[1], (8, 8))
    ds = load_dataset(tmp_path)
    assert [t.which(im) for im in ds.x_test] == ["test/b/3.jpg"] and ds.y_test.tolist() == [1]


def test_images_folder_is_a_class_when_train_has_one(tmp_path: Path) -> None:
    t = Tree(tmp_path)
    for rel in ("train/images/1.jpg", "train/other/2.jpg", "test/images/3.jpg"):
        t.image(rel, rel.split("/")[1], (8, 8))
    ds = load_dataset(tmp_path)
    assert ds.class_names == ["images", "other"] and ds.y_test.tolist() == [0] and ds.notes == ()


def _set_wnid(path: Path, row: int, wnid: str) -> None:
    lines = path.read_text().splitlines()
    fields = lines[row].split("\t")
    fields[1] = wnid
    lines[row] = "\t".join(fields)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: (r / "val/val_annotations.txt").write_text(
            "".join(line + "\n" for line in (r / "val/val_annotations.txt").read_text().splitlines()[1:])),
         (r"tiny-imagenet-200/val/images/val_0.JPEG has no line in .*tiny-imagenet-200/val/val_annotations.txt; "
          r"add its line \(from the original download\) or remove the image$")),
        (lambda r: _set_wnid(r / "val/val_annotations.txt", 4, "n09999999"),
         (r"val/val_annotations.txt line 5 labels val_4.JPEG as n09999999, a class .*tiny-imagenet-200/train "
          r"lacks; add .*tiny-imagenet-200/train/n09999999/ or remove that image$")),
        (lambda r: (r / "val/val_annotations.txt").write_text("val_0.JPEG\n"),
         r"val/val_annotations.txt line 1 is 'val_0.JPEG', not 'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1'"),
        (lambda r: (r / "val/val_annotations.txt").write_text(
            "val_0.JPEG\tn01443537\t0\t0\t1\t1\nval_0.JPEG\tn02124075\t0\t0\t1\t1\n"),
         r"val/val_annotations.txt labels val_0.JPEG twice, as n01443537 \(line 1\) and n02124075 \(line 2\)"),
    ],
)
def test_malformed_tiny_imagenet_is_explained(tmp_path: Path, edit: object, message: str) -> None:
    t = make_tiny(tmp_path / "dl", val_per_class=2, test_images=1)
    edit(t.root)  # type: ignore[operator]
    with pytest.raises(UmaeError, match=message):
        load_dataset(t.root)
    archive = _tar_gz(t.root, tmp_path / "t.tar.gz", "tiny-imagenet-200")
    with pytest.raises(UmaeError, match=message):
        load_dataset(archive)


def test_bad_kaggle_solution_header_is_explained(tmp_path: Path) -> None:
    t = make_kaggle(tmp_path, sizes=False)
    (t.root / "LOC_val_solution.csv").write_text("id,label\nILSVRC2012_val_00000001,n01440764\n")
    with pytest.raises(UmaeError, match=r"LOC_val_solution.csv: the first line is 'id,label', not "
                                        r"'ImageId,PredictionString'; replace the file"):
        load_dataset(t.root)


def test_find_listing_without_any_tree_raises_nolayout() -> None:
    with pytest.raises(NoLayout, match=r"src: the folder holds no train/<class>/<image> files \(first entries: "
                                       r"a.jpg, b/c.png\)"):
        find_listing(["a.jpg", "b/c.png"], lambda n: "", where="src")


def test_empty_class_folders_from_dirs_count(tmp_path: Path) -> None:
    with pytest.raises(UmaeError, match=r"src/train/b holds no images"):
        find_listing(["train/a/1.jpg", "test/a/2.jpg"], lambda n: "", where="src", dirs=["train", "train/b"])


# --------------------------------------------------------------------------------------------
# Symlinks
# --------------------------------------------------------------------------------------------


def test_symlink_loop_is_skipped_with_a_note_and_links_are_followed(tmp_path: Path) -> None:
    t = Tree(tmp_path / "data")
    outside = Tree(tmp_path / "elsewhere")
    for rel in ("train/a/1.png", "test/a/2.png", "test/b/3.png"):
        t.image(rel, rel.split("/")[1], (8, 8))
    outside.image("dogs/4.png", "b", (8, 8))
    os.symlink(tmp_path / "elsewhere" / "dogs", t.root / "train" / "b")  # a symlinked class folder
    os.symlink("..", t.root / "train" / "a" / "up")  # train/a/up/a/up/... would never end
    os.symlink("../../train", t.root / "train" / "a" / "again")
    ds = load_dataset(t.root)
    assert ds.class_names == ["a", "b"] and ds.y_train.tolist() == [0, 1]
    assert ds.notes == (
        "skipped train/a/again: a symlink (-> ../../train) back to a folder above it, which would loop forever",
        "skipped train/a/up: a symlink (-> ..) back to a folder above it, which would loop forever",
    )
    walk = walk_tree(t.root)
    assert "train/b/4.png" in walk.files and len(walk.notes) == 2


# --------------------------------------------------------------------------------------------
# The wnid beside the name in results.json
# --------------------------------------------------------------------------------------------


def test_probe_on_tiny_imagenet_tarball_keeps_wnids_and_notes(tmp_path: Path) -> None:
    t = make_tiny(tmp_path / "dl")
    archive = _tar_gz(t.root, tmp_path / "tiny-imagenet-200.tar.gz", "tiny-imagenet-200")
    ckpt = tmp_path / "mae_pretrain_vit_tiny.pth"
    CF.make_official_encoder(ckpt)
    out = tmp_path / "probe"
    assert main(["probe", str(ckpt), "--data", str(archive), "--k", "3", "--device", "cpu", "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())["settings"]["data"]
    assert data["class_ids"] == sorted(TINY_WNIDS)
    assert data["class_names"] == ["goldfish", "European fire salamander", "Egyptian cat"]
    assert (data["n_train"], data["n_test"]) == (12, 9)
    assert data["notes"][0].startswith("skipped the unlabeled test/ (4 images)")


def test_lazy_sources_list_the_same_layouts(tmp_path: Path) -> None:
    """The lazy folder and tar paths get the same labels, names and layout from find_listing."""
    from umae_eval.data.open_lazy import open_folder, open_tar

    t = make_tiny(tmp_path / "dl")
    archive = _tar_gz(t.root, tmp_path / "tiny-imagenet-200.tar.gz", "tiny-imagenet-200")
    eager = load_dataset(t.root)
    for lazy in (open_folder(t.root, "dl"), open_tar(archive, "t", cache=False)):
        assert lazy.layout == "tiny-imagenet"
        assert (lazy.class_ids, lazy.class_names) == (eager.class_ids, eager.class_names)
        np.testing.assert_array_equal(lazy.y_train, eager.y_train)
        np.testing.assert_array_equal(lazy.y_test, eager.y_test)
        assert [n.rsplit("/", 1)[1] for n in lazy.test.names] == [
            t.which(im).rsplit("/", 1)[1] for im in eager.x_test]
