"""Concept-bottleneck probe: face -> CNN trunk -> 17 Action-Unit units -> ONE linear softmax -> 6 emotions.

Measures, on FER2013 (six emotions, fear excluded), whether the trained pixel CNN's trunk can be
turned into a concept-bottleneck model (Koh et al., ICML 2020) whose 17 bottleneck units ARE the
measured AU intensities (``data/fer2013_{train,val}_au.csv.gz``, AU01_r..AU45_r on 0-5) and whose
emotion head is a single linear softmax layer over them.

Recipes (``--recipe``):

``frozen``       Cheap map of the problem on frozen CNN features (the 256-d Dense block, computed
                 once per face and its mirror): ridge AU regression (Pearson r per AU), a linear
                 probe for emotion, and joint bottleneck heads Dense(17)->Dense(6) trained on the
                 cached features for several lambdas.  A few minutes.
``au``           AU regressor alone: trunk -> Dense(17) on standardised AUs, masked MSE, fine-tuned
                 end to end with augmentation.  Then fits the *independent* (logistic regression
                 on the measured train AUs) and *sequential* (on the regressor's predicted train
                 AUs) heads on its predictions.  ``independent`` and ``sequential`` are aliases.
``joint``        trunk -> Dense(17) "AU z-units" -> Dense(6, softmax); loss = CE + lam * masked
                 MSE(units, standardised AUs).

The AU units are z-scores (per-AU mean/std of the train faces); the fixed affine map to 0-5
(``au = mean + std * z``) can be folded into the head's weights, so the head is still one linear
layer over the 17 AUs on their 0-5 scale.  Images without a measured face (~5 %) have NaN AUs and
contribute the emotion loss only (the AU loss is masked).

Model selection honesty: a stratified 10 % slice of TRAIN (seed 0) is held out of training and
used for every choice (best epoch, logistic-regression C); the official val split is scored once,
at the end.  Caveat: the CNN whose trunk is the initialisation was trained on ALL train images, so
the held-out slice is not unseen by the trunk (its emotion accuracy is optimistic; AU r much less
so, since the CNN never saw AU targets).  Val accuracy averages each face with its mirror image,
as the CNN baseline (0.703) does.

Runs on one CPU thread (the env vars and tf.config calls below are set before TensorFlow loads).
Results are appended to ``--results`` (markdown) and a JSON line per run to ``--results``.jsonl.

Examples::

    python bench/au_bottleneck_probe.py --recipe frozen
    python bench/au_bottleneck_probe.py --recipe au --epochs 4 --max-minutes 20
    python bench/au_bottleneck_probe.py --recipe joint --lam 1 --epochs 4 --max-minutes 20
    python bench/au_bottleneck_probe.py --recipe joint --lam 1 --limit 200 --epochs 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _k in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "MKL_NUM_THREADS",
           "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fer_core.au_codes import AU_COLUMNS as AU_COLS  # noqa: E402
from fer_core.emotions import SIX_EMOTIONS as EMOTIONS  # noqa: E402

DATA_DIR = Path(os.environ.get("FER_DATA_DIR", ROOT.parent / "shared" / "datasets")) / "fer2013"
CNN_BASELINE = 0.7026


def log(*args) -> None:
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# ----------------------------------------------------------------------------- data

def load_split(split: str, cache_dir: Path, au_dir: Path) -> dict:
    """Images (N,48,48) uint8, labels, AU targets (N,17) with NaN where no face, file names.

    AU rows are joined to images BY FILE NAME (``<emotion>/<name>.jpg``), keeping rows with
    face == 0 and success == 1; the join is asserted and a few pairs are printed.
    """
    cache = cache_dir / f"fer2013_{split}_six.npz"
    if cache.is_file():
        d = dict(np.load(cache, allow_pickle=False))
        log(f"{split}: {len(d['y'])} images from cache {cache}")
    else:
        files, xs, ys = [], [], []
        for label, emotion in enumerate(EMOTIONS):
            for path in sorted((DATA_DIR / split / emotion).glob("*.jpg")):
                with Image.open(path) as im:
                    im = im.convert("L")
                    if im.size != (48, 48):
                        im = ImageOps.fit(im, (48, 48), Image.Resampling.LANCZOS)
                    xs.append(np.asarray(im, dtype=np.uint8))
                files.append(f"{emotion}/{path.name}")
                ys.append(label)
        d = {"x": np.stack(xs), "y": np.asarray(ys, np.int64), "files": np.asarray(files)}
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **d)
        log(f"{split}: read {len(files)} images, cached to {cache}")

    table = pd.read_csv(au_dir / f"fer2013_{split}_au.csv.gz")
    ok = table[(table["face"] == 0) & (table["success"] == 1)]
    assert not ok["file"].duplicated().any(), "several face-0 rows for one file"
    by_file = ok.set_index("file")
    files = [str(f) for f in d["files"]]
    present = by_file.index.intersection(files)
    au = np.full((len(files), len(AU_COLS)), np.nan, np.float32)
    pos = {f: i for i, f in enumerate(files)}
    rows = by_file.loc[present]
    idx = np.array([pos[f] for f in rows.index])
    au[idx] = rows[list(AU_COLS)].to_numpy(np.float32)
    conf = np.full(len(files), np.nan, np.float32)  # detector score; 0 = crop measured whole (no detection)
    conf[idx] = rows["confidence"].to_numpy(np.float32)
    # The join: table labels must agree with the image folders; every six-emotion table row is used.
    labels = np.array([EMOTIONS[i] for i in d["y"]])
    assert (rows["label"].to_numpy() == labels[idx]).all(), "AU table label != image folder"
    six_rows = ok[ok["label"].isin(EMOTIONS)]
    assert len(six_rows) == len(present), f"{len(six_rows) - len(present)} AU rows without an image"
    assert set(table["file"]) >= set(files), "images missing from the AU table"
    for i in (idx[0], idx[len(idx) // 2], idx[-1]):
        log(f"  join {split}: image[{i}]={files[i]} label={labels[i]} AU01..={au[i, :4].round(3)} "
            f"table={by_file.loc[files[i], list(AU_COLS[:4])].to_numpy().round(3)}")
    log(f"{split}: {len(files)} six-emotion images, {len(idx)} with measured AUs "
        f"({100 * (1 - len(idx) / len(files)):.1f}% no face -> AU loss masked)")
    d["au"], d["conf"] = au, conf
    log(f"{split}: {(conf > 0).sum()} faces found by the detector, {(conf == 0).sum()} measured on the whole crop")
    return d


def stratified_split(y: np.ndarray, fraction: float = 0.1, seed: int = 0):
    """(train, held_out) indices holding out ``fraction`` of every class (as fer_core.cnn does)."""
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        held.extend(idx[:max(1, int(round(len(idx) * fraction)))].tolist())
    mask = np.zeros(len(y), bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def subsample(d: dict, idx: np.ndarray) -> dict:
    return {k: v[idx] for k, v in d.items()}


def limit_per_class(d: dict, n: int | None, seed: int = 0) -> dict:
    if not n:
        return d
    rng = np.random.default_rng(seed)
    keep = np.concatenate([np.sort(rng.permutation(np.flatnonzero(d["y"] == c))[:n]) for c in range(len(EMOTIONS))])
    return subsample(d, keep)


# ----------------------------------------------------------------------------- metrics

def pearson_per_au(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Pearson r per AU over rows with a measured face (NaN-free rows of ``true``)."""
    ok = ~np.isnan(true).any(1)
    p, t = pred[ok].astype(np.float64), true[ok].astype(np.float64)
    p, t = p - p.mean(0), t - t.mean(0)
    return (p * t).sum(0) / np.sqrt((p ** 2).sum(0) * (t ** 2).sum(0) + 1e-12)


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int = len(EMOTIONS)) -> float:
    f1 = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        fp, fn = np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1))


def fit_logreg(xtr, ytr, xsel, ysel, Cs=(0.01, 0.1, 1.0, 10.0)):
    """Multinomial logistic regression on standardised inputs; C picked on the held-out slice."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    best = None
    for C in Cs:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
        clf.fit(xtr, ytr)
        acc = float((clf.predict(xsel) == ysel).mean())
        if best is None or acc > best[0]:
            best = (acc, C, clf)
    return best


# ----------------------------------------------------------------------------- models

def setup_tf():
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    return tf, keras


def build_strong_trunk(keras, tap: str = "dense"):
    """fer_core.cnn.build_cnn('strong') without its Dense(6) (copied: fer_core is being refactored),
    ending at the ReLU of the Dense-256 block (``tap='dense'``) or at global average pooling ('gap');
    the dropout in front of the AU layer is added by the caller."""
    from keras import layers
    inputs = keras.Input((48, 48, 1), name="face")
    x = inputs
    for block, filters in enumerate((32, 64, 128, 256)):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        if block < 3:
            x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(0.1 + 0.1 * block)(x)
    x = layers.GlobalAveragePooling2D()(x)
    if tap == "dense":
        x = layers.Dense(256, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    return keras.Model(inputs, x, name="trunk")


def load_cnn_trunk(keras, path: Path, tap: str = "dense"):
    """The trained CNN up to and including its Dense-256 block (its ReLU; ``tap='dense'``) or up to its
    global average pooling ('gap').  The CNN's dropout in front of 'emotion' is left out: the caller
    adds Dropout(--au-dropout), 0.5 reproducing the CNN."""
    cnn = keras.models.load_model(path, safe_mode=True, compile=False)
    names = [layer.name for layer in cnn.layers]
    last_dropout = cnn.layers[names.index("emotion") - 1]
    assert isinstance(last_dropout, keras.layers.Dropout), last_dropout
    if tap == "dense":
        out = last_dropout.input
    else:
        out = next(layer for layer in cnn.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)).output
    return cnn, keras.Model(cnn.inputs, out, name="trunk")


def _bottleneck_step(tf, keras, m, opt, lam: float):
    """One training step of a cached-feature bottleneck head: CE + lam * masked MSE."""

    @tf.function
    def step(x, y, zz, mk):
        with tf.GradientTape() as tape:
            uu, pp = m(x, training=True)
            ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, pp))
            mse = tf.reduce_sum(mk * (uu - zz) ** 2) / tf.maximum(tf.reduce_sum(mk), 1.0)
            loss = ce + lam * mse
        opt.apply_gradients(zip(tape.gradient(loss, m.trainable_variables), m.trainable_variables))

    return step


def _inference(tf, m):
    return tf.function(lambda x: m(x, training=False))




def predict(fn, x_u8: np.ndarray, mirror: bool = True, batch: int = 256):
    """Run ``fn`` (a tf.function of float 0..1 images) in chunks; average with the mirror image."""
    outs = []
    for i in range(0, len(x_u8), batch):
        xb = x_u8[i:i + batch, :, :, None].astype(np.float32) / 255.0
        o = [np.asarray(t) for t in _as_tuple(fn(xb))]
        if mirror:
            o = [(a + np.asarray(b)) / 2 for a, b in zip(o, _as_tuple(fn(xb[:, :, ::-1].copy())))]
        outs.append(o)
    return [np.concatenate(parts) for parts in zip(*outs)]


def _as_tuple(t):
    return tuple(t) if isinstance(t, (list, tuple)) else (t,)


# ----------------------------------------------------------------------------- recipes

def run_frozen(args, tr, sel, val, mu, sd, tf, keras):
    """Frozen CNN features (computed once per face and its mirror; no augmentation, no fine-tuning).

    For each feature set (the Dense-256 block's ReLU, the 256-d global average pooling, both
    concatenated): ridge regression to the standardised AUs (alpha picked on sel by mean r), the
    independent and sequential logistic heads on the ridge units, and joint heads Dense(17) ->
    Dense(6, softmax) trained on the cached features with CE + lambda * masked MSE.
    """
    from sklearn.linear_model import Ridge
    cnn, _ = load_cnn_trunk(keras, args.cnn)
    names = [layer.name for layer in cnn.layers]
    gap_layer = next(layer for layer in cnn.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    feat_model = keras.Model(cnn.inputs, [cnn.layers[names.index("emotion") - 1].input, gap_layer.output])
    f = tf.function(lambda x: feat_model(x, training=False))
    t0 = time.time()
    raw = {}
    for name, d in (("train", tr), ("sel", sel), ("val", val)):
        raw[name] = (predict(f, d["x"], mirror=False), predict(f, d["x"][:, :, ::-1], mirror=False))
        log(f"frozen: features {name} ({time.time() - t0:.0f}s)")
    feats = {}  # feature set -> split -> (plain, mirror)
    for fname, pick in (("dense256", lambda o: o[0]), ("gap256", lambda o: o[1]),
                        ("dense+gap512", lambda o: np.concatenate(o, 1))):
        feats[fname] = {s: (pick(raw[s][0]).astype(np.float32), pick(raw[s][1]).astype(np.float32)) for s in raw}
    head = tf.function(lambda x: cnn(x, training=False))
    acc_cnn = {}
    for name, d in (("sel", sel), ("val", val)):
        p = predict(head, d["x"])[0]
        acc_cnn[name] = (float((p.argmax(1) == d["y"]).mean()), macro_f1(d["y"], p.argmax(1)))
    log("frozen: CNN itself (mirror-averaged):", acc_cnn)

    Ztr2 = (np.concatenate([tr["au"], tr["au"]]) - mu) / sd
    ok2 = ~np.isnan(Ztr2).any(1)
    ok_tr = ~np.isnan(tr["au"]).any(1)
    ridge_rows, head_rows, joint_rows = [], [], []
    for fname, F in feats.items():
        Xtr2 = np.concatenate(F["train"])
        best = None
        for alpha in (1.0, 10.0, 100.0):
            reg = Ridge(alpha=alpha).fit(Xtr2[ok2], Ztr2[ok2])
            z = {s: (reg.predict(F[s][0]) + reg.predict(F[s][1])) / 2 for s in F}
            r = {s: pearson_per_au(mu + sd * z[s], d["au"]) for s, d in (("sel", sel), ("val", val))}
            ridge_rows.append((fname, alpha, r["sel"], r["val"]))
            log(f"frozen ridge {fname} alpha={alpha}: sel r={r['sel'].mean():.3f} val r={r['val'].mean():.3f}")
            if best is None or r["sel"].mean() > best[0]:
                best = (r["sel"].mean(), alpha, z, r)
        _, alpha, z, r = best
        au = {s: mu + sd * z[s] for s in z}
        a_i, C_i, clf_i = fit_logreg(tr["au"][ok_tr], tr["y"][ok_tr], au["sel"], sel["y"])
        a_s, C_s, clf_s = fit_logreg(au["train"], tr["y"], au["sel"], sel["y"])
        head_rows.append((fname, alpha, "independent", C_i, a_i, _head_scores(clf_i, au["val"], val), r["val"].mean()))
        head_rows.append((fname, alpha, "sequential", C_s, a_s, _head_scores(clf_s, au["val"], val), r["val"].mean()))
        log(f"frozen heads {fname}: {head_rows[-2][2:]} {head_rows[-1][2:]}")

        # joint heads on the cached features (train = each face and its mirror)
        ytr2 = np.concatenate([tr["y"], tr["y"]])
        Mtr2 = (~np.isnan(Ztr2)).astype(np.float32)
        Z0 = np.nan_to_num(Ztr2).astype(np.float32)
        for lam in args.lams:
            keras.utils.set_random_seed(args.seed)
            inp = keras.Input((Xtr2.shape[1],))
            h = keras.layers.Dropout(args.au_dropout)(inp) if args.au_dropout > 0 else inp
            u = keras.layers.Dense(17, name="au_z")(h)
            p = keras.layers.Dense(6, activation="softmax", name="emotion")(u)
            m = keras.Model(inp, [u, p])
            opt = keras.optimizers.Adam(1e-3)

            step = _bottleneck_step(tf, keras, m, opt, lam)
            ev = _inference(tf, m)
            rng = np.random.default_rng(args.seed)
            best = None
            for ep in range(args.frozen_epochs):
                perm = rng.permutation(len(ytr2))
                for i in range(0, len(perm), 256):
                    b = perm[i:i + 256]
                    step(Xtr2[b], ytr2[b], Z0[b], Mtr2[b])
                out = {}
                for name, d in (("sel", sel), ("val", val)):
                    u0, p0 = ev(F[name][0])
                    u1, p1 = ev(F[name][1])
                    pr = (np.asarray(p0) + np.asarray(p1)) / 2
                    uz = (np.asarray(u0) + np.asarray(u1)) / 2
                    out[name] = (float((pr.argmax(1) == d["y"]).mean()), macro_f1(d["y"], pr.argmax(1)),
                                 pearson_per_au(mu + sd * uz, d["au"]))
                score = out["sel"][0] + (1.0 if lam == 0 or out["sel"][2].mean() >= args.min_r else 0.0)
                if best is None or score > best[0]:
                    best = (score, ep + 1, out)
            _, ep, out = best
            joint_rows.append((fname, lam, ep, out))
            log(f"frozen joint {fname} lam={lam}: epoch {ep} (by sel) sel acc={out['sel'][0]:.4f} "
                f"r={out['sel'][2].mean():.3f} | val acc={out['val'][0]:.4f} F1={out['val'][1]:.4f} "
                f"r={out['val'][2].mean():.3f}")

    lines = [f"\n## frozen CNN features ({time.strftime('%Y-%m-%d %H:%M')}, {(time.time() - T0) / 60:.1f} min)\n",
             f"Command: `{' '.join(sys.argv)}`\n",
             f"AU tables: {args.au_dir}. CNN itself, mirror-averaged: sel acc {acc_cnn['sel'][0]:.4f} (the sel slice "
             f"was in the CNN's training set), val acc {acc_cnn['val'][0]:.4f}, val macro-F1 {acc_cnn['val'][1]:.4f}\n",
             "Ridge (features of train faces + mirrors -> standardised AUs; prediction = mean over face and mirror):\n",
             "| features | alpha | sel mean r | val mean r | " + " | ".join(a[:4] for a in AU_COLS) + " (val) |",
             "|---|---|---|---|" + "---|" * len(AU_COLS)]
    for fname, alpha, rs, rv in ridge_rows:
        lines.append(f"| {fname} | {alpha:g} | {rs.mean():.3f} | {rv.mean():.3f} | " + " | ".join(f"{v:.2f}" for v in rv) + " |")
    lines += ["", "Linear heads on the ridge AUs (alpha with the best sel r; sklearn LogisticRegression, C on sel):\n",
              "| features | alpha | recipe | C | sel acc | val acc | val macro-F1 | val mean r |", "|---|---|---|---|---|---|---|---|"]
    for fname, alpha, rec, C, a, (va, vf), vr in head_rows:
        lines.append(f"| {fname} | {alpha:g} | {rec} | {C:g} | {a:.4f} | {va:.4f} | {vf:.4f} | {vr:.3f} |")
    lines += ["", f"Joint heads on frozen features (dropout {args.au_dropout:g} -> Dense(17) z-units -> Dense(6) softmax; "
                  f"Adam 1e-3, batch 256, up to {args.frozen_epochs} epochs; epoch picked on sel: best acc among epochs "
                  f"with sel mean r >= {args.min_r}, else best acc):\n",
              "| features | lambda | epoch | sel acc | sel mean r | val acc | val macro-F1 | val mean r |",
              "|---|---|---|---|---|---|---|---|"]
    for fname, lam, ep, out in joint_rows:
        lines.append(f"| {fname} | {lam:g} | {ep} | {out['sel'][0]:.4f} | {out['sel'][2].mean():.3f} | "
                     f"{out['val'][0]:.4f} | {out['val'][1]:.4f} | {out['val'][2].mean():.3f} |")
    write_results(args, "\n".join(lines) + "\n", {
        "recipe": "frozen", "argv": sys.argv, "au_dir": str(args.au_dir), "cnn": acc_cnn,
        "ridge": [(a, b, c.tolist(), d.tolist()) for a, b, c, d in ridge_rows],
        "heads": [list(r) for r in head_rows],
        "joint": [(fn, lam, e, {k: (v[0], v[1], v[2].tolist()) for k, v in o.items()}) for fn, lam, e, o in joint_rows]})


def run_finetune(args, tr, sel, val, mu, sd, tf, keras):
    """Train trunk -> Dense(17) [-> Dense(6)] end to end (recipes au / joint)."""
    keras.utils.set_random_seed(args.seed)
    if args.init == "cnn":
        _, trunk = load_cnn_trunk(keras, args.cnn, args.tap)
    else:
        trunk = build_strong_trunk(keras, args.tap)
    inp = keras.Input((48, 48, 1))
    feat = trunk(inp)
    if args.au_dropout > 0:
        feat = keras.layers.Dropout(args.au_dropout, name="au_dropout")(feat)
    units = keras.layers.Dense(len(AU_COLS), name="au_z")(feat)  # linear: standardised AU units
    probs = keras.layers.Dense(len(EMOTIONS), activation="softmax", name="emotion")(units)
    model = keras.Model(inp, [units, probs])
    head_vars = model.get_layer("au_z").trainable_variables + model.get_layer("emotion").trainable_variables
    trunk_vars = trunk.trainable_variables
    joint = args.recipe == "joint"
    lam = float(args.lam) if joint else 1.0
    ce_w = 1.0 if joint else 0.0

    fwd = tf.function(lambda x: model(x, training=False))
    if args.warm_start and args.init == "cnn":
        # Closed-form start: ridge from the frozen 256-d features to z-AUs, logistic head on those units.
        from sklearn.linear_model import LogisticRegression, Ridge
        ff = tf.function(lambda x: trunk(x, training=False))
        F = predict(ff, tr["x"], mirror=False)[0]
        ok = ~np.isnan(tr["au"]).any(1)
        reg = Ridge(alpha=args.ridge_alpha).fit(F[ok], ((tr["au"] - mu) / sd)[ok])
        model.get_layer("au_z").set_weights([reg.coef_.T.astype(np.float32), reg.intercept_.astype(np.float32)])
        if joint:
            lr_ = LogisticRegression(C=1.0, max_iter=3000).fit(reg.predict(F), tr["y"])
            model.get_layer("emotion").set_weights([lr_.coef_.T.astype(np.float32), lr_.intercept_.astype(np.float32)])
        log(f"warm start: ridge (alpha={args.ridge_alpha}) + logistic head fitted on frozen features")

    steps_per_epoch = int(np.ceil(len(tr["y"]) / args.batch))
    total = steps_per_epoch * args.epochs

    def schedule(base):
        if args.warmup:
            return keras.optimizers.schedules.CosineDecay(0.0, max(1, total - args.warmup), alpha=0.05,
                                                          warmup_target=base, warmup_steps=args.warmup)
        return keras.optimizers.schedules.CosineDecay(base, total, alpha=0.05)

    opt_trunk = keras.optimizers.Adam(schedule(args.lr_trunk))
    opt_head = keras.optimizers.Adam(schedule(args.lr_head))
    from fer_core.predictors.cnn import _augmenter  # the CNN's training augmentation

    aug = _augmenter(args.seed) if args.augment else None

    x_all = tr["x"]
    z_all = (tr["au"] - mu) / sd
    m_all = (~np.isnan(z_all)).astype(np.float32)
    z_all = np.nan_to_num(z_all).astype(np.float32)

    @tf.function
    def train_step(x, y, z, mk):
        if aug is not None:
            x = aug(x, training=True)
        with tf.GradientTape() as tape:
            u, p = model(x, training=True)
            ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, p))
            mse = tf.reduce_sum(mk * (u - z) ** 2) / tf.maximum(tf.reduce_sum(mk), 1.0)
            loss = ce_w * ce + lam * mse
        g = tape.gradient(loss, trunk_vars + head_vars)
        opt_trunk.apply_gradients(zip(g[:len(trunk_vars)], trunk_vars))
        opt_head.apply_gradients(zip(g[len(trunk_vars):], head_vars))
        return ce, mse

    def evaluate(d):
        u, p = predict(fwd, d["x"])
        au = mu + sd * u
        r = pearson_per_au(au, d["au"])
        det = d["conf"] > 0
        r_det = float(np.nanmean(pearson_per_au(au[det], d["au"][det])))
        pred = p.argmax(1)
        return {"acc": float((pred == d["y"]).mean()), "f1": macro_f1(d["y"], pred), "r": r, "mean_r_det": r_det,
                "mean_r": float(np.nanmean(r)), "au": au, "proba": p}

    def score(ev):  # model selection on the held-out train slice only
        if not joint:
            return ev["mean_r"]
        return ev["acc"] + (1.0 if ev["mean_r"] >= args.min_r or lam == 0 else 0.0)

    start = time.time()
    deadline = start + 60 * args.max_minutes
    rng = np.random.default_rng(args.seed)
    ev0 = evaluate(sel)
    log(f"epoch 0 (start): sel acc={ev0['acc']:.4f} sel mean r={ev0['mean_r']:.3f}")
    history = [(0, ev0["acc"], ev0["mean_r"], float("nan"), float("nan"), 0.0)]
    best = (score(ev0), 0, model.get_weights())
    stopped = False
    for epoch in range(1, args.epochs + 1):
        perm = rng.permutation(len(x_all))
        ces, mses = [], []
        for s in range(steps_per_epoch):
            b = np.sort(perm[s * args.batch:(s + 1) * args.batch])
            ce, mse = train_step(x_all[b, :, :, None].astype(np.float32) / 255.0, tr["y"][b], z_all[b], m_all[b])
            ces.append(float(ce))
            mses.append(float(mse))
            if s % 100 == 0:
                log(f"  epoch {epoch} step {s}/{steps_per_epoch} ce={np.mean(ces[-100:]):.3f} mse={np.mean(mses[-100:]):.3f}")
            if time.time() > deadline:
                stopped = True
                break
        ev = evaluate(sel)
        history.append((epoch, ev["acc"], ev["mean_r"], float(np.mean(ces)), float(np.mean(mses)),
                        (time.time() - start) / 60))
        log(f"epoch {epoch}: train ce={np.mean(ces):.3f} mse(z)={np.mean(mses):.3f} | sel acc={ev['acc']:.4f} "
            f"F1={ev['f1']:.4f} mean r={ev['mean_r']:.3f} | {(time.time() - start) / 60:.1f} min"
            + (" (deadline)" if stopped else ""))
        if score(ev) > best[0]:
            best = (score(ev), epoch, model.get_weights())
        if stopped:
            break
    train_min = (time.time() - start) / 60
    model.set_weights(best[2])
    log(f"best epoch by sel: {best[1]}")
    ev_sel, ev_val = evaluate(sel), evaluate(val)
    tag = args.tag or (f"{args.recipe}-{args.init}" + (f"-lam{lam:g}" if joint else "")
                       + ("" if (args.tap, args.au_dropout) == ("dense", 0.5) else f"-{args.tap}-do{args.au_dropout:g}"))
    if args.save_model:
        model.save(Path(args.out_dir) / f"{tag}.keras")

    lines = [f"\n## {tag} ({time.strftime('%Y-%m-%d %H:%M')})\n", f"Command: `{' '.join(sys.argv)}`\n",
             f"init={args.init} tap={args.tap} au_dropout={args.au_dropout} warm_start={args.warm_start} lr_trunk={args.lr_trunk} lr_head={args.lr_head} "
             f"(Adam, cosine to 5%, warmup {args.warmup} steps) batch={args.batch} augment={args.augment} "
             f"lam={lam:g} ce_weight={ce_w:g}; n_train={len(tr['y'])} n_sel={len(sel['y'])} n_val={len(val['y'])}; "
             f"training {train_min:.1f} min, best epoch (by sel) {best[1]}\n",
             "| epoch | sel acc | sel mean r | train CE | train MSE(z) | minutes |", "|---|---|---|---|---|---|"]
    lines += [f"| {e} | {a:.4f} | {r:.3f} | {c:.3f} | {m:.3f} | {t:.1f} |" for e, a, r, c, m, t in history]
    lines += ["", "| split | acc (mirror avg) | macro-F1 | mean AU r | mean r, detector faces | " + " | ".join(a[:4] for a in AU_COLS) + " |",
              "|---|---|---|---|---|" + "---|" * len(AU_COLS)]
    for name, ev in (("sel", ev_sel), ("val", ev_val)):
        acc = f"{ev['acc']:.4f}" if joint else "-"
        f1 = f"{ev['f1']:.4f}" if joint else "-"
        lines.append(f"| {name} | {acc} | {f1} | {ev['mean_r']:.3f} | {ev['mean_r_det']:.3f} | "
                     + " | ".join(f"{v:.2f}" for v in ev["r"]) + " |")
    ok = ~np.isnan(val["au"]).any(1)
    mae = np.abs(np.clip(ev_val["au"][ok], 0, 5) - val["au"][ok]).mean(0)
    lines.append(f"\nval MAE on 0-5 (pred clipped to 0-5): mean {mae.mean():.3f}; per AU " +
                 " ".join(f"{v:.2f}" for v in mae))
    record = {"recipe": args.recipe, "tag": tag, "lam": lam, "init": args.init, "best_epoch": best[1],
              "train_minutes": train_min, "history": history,
              "sel": {"acc": ev_sel["acc"], "f1": ev_sel["f1"], "r": ev_sel["r"].tolist()},
              "val": {"acc": ev_val["acc"], "f1": ev_val["f1"], "r": ev_val["r"].tolist(), "mean_r_det": ev_val["mean_r_det"]},
              "argv": sys.argv, "au_dir": str(args.au_dir)}

    if joint:
        W, b = model.get_layer("emotion").get_weights()
        # fold the fixed z -> 0..5 map into the head: logits = (W / sd)^T au + (b - (mu / sd) W)
        Wf, bf = W / sd[:, None], b - (mu / sd) @ W
        u64, p64 = predict(fwd, val["x"][:64], mirror=False)
        diff = (mu + sd * u64) @ Wf + bf - np.log(p64)
        spread = np.abs(diff - diff.mean(1, keepdims=True)).max()  # softmax is shift-invariant
        lines.append(f"\nhead folded onto 0-5 AUs (logits = W_au^T au + b_au): max deviation from the z-unit head "
                     f"on 64 val faces {spread:.1e}")
        np.savez(Path(args.out_dir) / f"{tag}_head.npz", W_z=W, b_z=b, W_au=Wf, b_au=bf, mu=mu, sd=sd)
    else:
        # independent & sequential heads on this regressor's predictions
        u_tr = predict(fwd, tr["x"])[0]
        au_tr_pred = mu + sd * u_tr
        ok_tr = ~np.isnan(tr["au"]).any(1)
        seq_rows = []
        t1 = time.time()
        acc, C, clf = fit_logreg(tr["au"][ok_tr], tr["y"][ok_tr], ev_sel["au"], sel["y"])
        ind = _head_scores(clf, ev_val["au"], val)
        ok_val = ~np.isnan(val["au"]).any(1)
        oracle = clf.predict(val["au"][ok_val])
        seq_rows.append(("independent (head on measured train AUs -> predicted val AUs)", C, acc, ind))
        acc2, C2, clf2 = fit_logreg(au_tr_pred, tr["y"], ev_sel["au"], sel["y"])
        seq = _head_scores(clf2, ev_val["au"], val)
        seq_rows.append(("sequential (head on predicted train AUs)", C2, acc2, seq))
        head_min = (time.time() - t1) / 60
        lines += ["", f"Heads on this regressor's AUs (sklearn multinomial LogisticRegression, standardised inputs, C on sel; "
                      f"{head_min:.1f} min):\n",
                  "| recipe | C | sel acc | val acc | val macro-F1 | val mean AU r |", "|---|---|---|---|---|---|"]
        for name, C_, a, (va, vf) in seq_rows:
            lines.append(f"| {name} | {C_:g} | {a:.4f} | {va:.4f} | {vf:.4f} | {ev_val['mean_r']:.3f} |")
        lines.append(f"| reference: same independent head on MEASURED val AUs (faces only, n={ok_val.sum()}) | {C:g} | - | "
                     f"{(oracle == val['y'][ok_val]).mean():.4f} | {macro_f1(val['y'][ok_val], oracle):.4f} | 1 |")
        record["independent"] = {"C": C, "sel_acc": acc, "val_acc": ind[0], "val_f1": ind[1]}
        record["sequential"] = {"C": C2, "sel_acc": acc2, "val_acc": seq[0], "val_f1": seq[1]}
        record["oracle_val_acc_faces"] = float((oracle == val["y"][ok_val]).mean())
        np.savez(Path(args.out_dir) / f"{tag}_preds.npz", au_train=au_tr_pred, au_sel=ev_sel["au"], au_val=ev_val["au"])
    write_results(args, "\n".join(lines) + "\n", record)


def _head_scores(clf, au_pred, d):
    pred = clf.predict(au_pred)
    return float((pred == d["y"]).mean()), macro_f1(d["y"], pred)


def write_results(args, text: str, record: dict) -> None:
    print(text, flush=True)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf8") as fh:
        fh.write(text)
    with open(path.with_suffix(".jsonl"), "a", encoding="utf8") as fh:
        fh.write(json.dumps(record, default=float) + "\n")


T0 = time.time()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=("frozen", "au", "independent", "sequential", "joint"), default="joint")
    ap.add_argument("--lam", type=float, default=1.0, help="weight of the masked AU MSE (joint)")
    ap.add_argument("--lams", type=float, nargs="+", default=[0, 0.1, 1, 10], help="lambdas for --recipe frozen")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--frozen-epochs", type=int, default=30)
    ap.add_argument("--max-minutes", type=float, default=20.0, help="training deadline (checked every batch)")
    ap.add_argument("--init", choices=("cnn", "scratch"), default="cnn")
    ap.add_argument("--limit", type=int, default=None, help="images per class (quick runs)")
    ap.add_argument("--lr-trunk", type=float, default=1e-4)
    ap.add_argument("--lr-head", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-augment", dest="augment", action="store_false")
    ap.add_argument("--no-warm-start", dest="warm_start", action="store_false")
    ap.add_argument("--tap", choices=("dense", "gap"), default="dense",
                    help="AU layer on the Dense-256 block (dense) or on global average pooling (gap)")
    ap.add_argument("--au-dropout", type=float, default=0.5, help="dropout in front of the AU layer")
    ap.add_argument("--ridge-alpha", type=float, default=100.0)
    ap.add_argument("--min-r", type=float, default=0.6, help="target mean AU r (joint epoch selection)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cnn", type=Path, default=ROOT / "models" / "cnn_fer2013.keras")
    ap.add_argument("--au-dir", type=Path, default=ROOT / "data",
                    help="folder of fer2013_{train,val}_au.csv.gz (pin a copy: the repo's tables may be regenerated)")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/probe"))
    ap.add_argument("--out-dir", default="/tmp/probe")
    ap.add_argument("--results", default="/tmp/probe/results.md")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--save-model", action="store_true")
    args = ap.parse_args(argv)
    if args.recipe in ("independent", "sequential"):
        args.recipe = "au"
    if args.init == "scratch":
        args.warm_start = False

    train_all = load_split("train", args.cache_dir, args.au_dir)
    val = load_split("val", args.cache_dir, args.au_dir)
    tr_idx, sel_idx = stratified_split(train_all["y"], 0.1, args.seed)
    tr, sel = subsample(train_all, tr_idx), subsample(train_all, sel_idx)
    tr, sel, val = limit_per_class(tr, args.limit), limit_per_class(sel, args.limit and max(20, args.limit // 9)), \
        limit_per_class(val, args.limit and max(20, args.limit // 8))
    ok = ~np.isnan(tr["au"]).any(1)
    mu, sd = tr["au"][ok].mean(0), tr["au"][ok].std(0)
    log(f"split: train {len(tr['y'])} (faces {ok.sum()}), sel {len(sel['y'])}, val {len(val['y'])}; "
        f"AU mean {mu.round(2)} std {sd.round(2)}")
    tf, keras = setup_tf()
    log(f"TF {tf.__version__} Keras {keras.__version__} threads intra={tf.config.threading.get_intra_op_parallelism_threads()} "
        f"inter={tf.config.threading.get_inter_op_parallelism_threads()}")
    if args.recipe == "frozen":
        run_frozen(args, tr, sel, val, mu, sd, tf, keras)
    else:
        run_finetune(args, tr, sel, val, mu, sd, tf, keras)
    log(f"total {(time.time() - T0) / 60:.1f} min")


if __name__ == "__main__":
    main()
