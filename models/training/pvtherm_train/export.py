"""Export a trained checkpoint to ONNX f32 (BN folded) and int8 (QOperator, per-tensor).

python -m pvtherm_train.export detector --ckpt ../../work-data/det/best.pt --threshold 0.3
python -m pvtherm_train.export classifier --ckpt ../../work-data/cls/best.pt --threshold 0.5
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from .data import REPO_ROOT, add_data_args, load_ism, load_pv_frames, load_split, split_frames
from .nets import Classifier, Detector, make_classifier
from .preprocess import crop_module, normalise

MODELS = REPO_ROOT / "models"
DET_VERSION = "0.1.0"
CLS_VERSION = "0.1.0"


def set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key = k
        p.value = str(v)


def load_detector(ckpt: str) -> Detector:
    ck = torch.load(ckpt, map_location="cpu")
    m = Detector(ck["width"])
    m.load_state_dict(ck["model"])
    return m.eval()


def load_classifier(ckpt: str) -> Classifier:
    ck = torch.load(ckpt, map_location="cpu")
    m = make_classifier(ck["cfg"])
    m.load_state_dict(ck["model"])
    return m.eval()


def export_f32(model: torch.nn.Module, kind: str, path: Path, meta: dict[str, str], equalize: bool = True) -> None:
    if kind == "detector":
        dummy = torch.zeros(1, 1, 512, 640)
        names = (["image"], ["maps"])
        dyn = {"image": {2: "H", 3: "W"}, "maps": {2: "H_8", 3: "W_8"}}
    else:
        dummy = torch.zeros(1, 1, 40, 24)
        names = (["crop"], ["logits"])
        dyn = None
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / "m.onnx"
        torch.onnx.export(model, dummy, str(tmp), opset_version=13, input_names=names[0],
                          output_names=names[1], dynamic_axes=dyn, do_constant_folding=True, dynamo=False)
        m = onnx.load(str(tmp))
    inline_identities(m)
    ops = sorted({n.op_type for n in m.graph.node})
    if set(ops) - {"Conv", "Relu", "Add"}:
        raise RuntimeError(f"unexpected ops in {kind}: {ops}")
    if equalize:
        eq = equalize_chain(m) if "Add" not in ops else equalize_pairs(m)
        print("cross-layer equalisation, channel-range spread per conv before -> after:",
              ", ".join(f"{a:.1f}->{b:.1f}" for a, b in eq))
    m.producer_name = "pvtherm_train"
    m.doc_string = f"pvtherm {kind} (see models/MODEL_CARD.md)"
    set_metadata(m, meta)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def equalize_chain(model: onnx.ModelProto, iterations: int = 20) -> list[tuple[float, float]]:
    """Cross-layer equalisation (Nagel et al. 2019, "Data-free quantization") of a plain
    Conv -> Relu -> Conv -> ... chain, in place.

    For consecutive convs i, i+1 and each channel c between them, W_i[c] and b_i[c] are divided
    by s_c and W_{i+1}[:, c] is multiplied by s_c with s_c = sqrt(r1_c / r2_c) (r1 = range of
    output channel c of W_i, r2 = range of input channel c of W_{i+1}). ReLU(x / s) = ReLU(x) / s
    for s > 0, so the f32 function is unchanged (up to rounding), but the per-channel weight
    ranges become equal, which is what per-tensor int8 quantisation needs after BN folding.
    Returns (before, after) of the max/mean-channel-range ratio per conv, for the log."""
    from onnx import numpy_helper

    nodes = list(model.graph.node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    for n in nodes:
        if n.op_type not in ("Conv", "Relu"):
            raise RuntimeError(f"equalize_chain: unexpected op {n.op_type}")
    # must be a chain: each conv's input is the previous conv's (relu'd) output
    inits = {t.name: t for t in model.graph.initializer}
    ws = [numpy_helper.to_array(inits[c.input[1]]).astype(np.float64) for c in convs]
    bs = [numpy_helper.to_array(inits[c.input[2]]).astype(np.float64) for c in convs]

    def spread(w):
        r = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        return float(r.max() / max(r.mean(), 1e-12))

    before = [spread(w) for w in ws]
    for _ in range(iterations):
        for i in range(len(ws) - 1):
            r1 = np.abs(ws[i]).reshape(ws[i].shape[0], -1).max(axis=1)
            r2 = np.abs(ws[i + 1]).transpose(1, 0, 2, 3).reshape(ws[i + 1].shape[1], -1).max(axis=1)
            s = np.sqrt(np.maximum(r1, 1e-12) / np.maximum(r2, 1e-12))
            s = np.where((r1 > 1e-12) & (r2 > 1e-12), s, 1.0)
            ws[i] = ws[i] / s[:, None, None, None]
            bs[i] = bs[i] / s
            ws[i + 1] = ws[i + 1] * s[None, :, None, None]
    after = [spread(w) for w in ws]
    for c, w, b in zip(convs, ws, bs):
        inits[c.input[1]].CopyFrom(numpy_helper.from_array(w.astype(np.float32), c.input[1]))
        inits[c.input[2]].CopyFrom(numpy_helper.from_array(b.astype(np.float32), c.input[2]))
    return list(zip(before, after))


def inline_identities(model: onnx.ModelProto) -> None:
    """Replace Identity nodes on initializers (torch's constant folding shares equal tensors
    through them) by copies of the initializer, so every Conv owns its weights and bias."""
    inits = {t.name: t for t in model.graph.initializer}
    keep = []
    for n in model.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            model.graph.initializer.append(t)
        else:
            keep.append(n)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def equalize_pairs(model: onnx.ModelProto, iterations: int = 20) -> list[tuple[float, float]]:
    """Cross-layer equalisation for graphs with residual adds: only pairs Conv A -> Relu -> Conv B
    where the Relu's output feeds nothing but B (then scaling A's output channels is invisible
    to the rest of the graph), e.g. the stem chain and the first conv of each residual branch.
    Exact in f32, like equalize_chain."""
    from onnx import numpy_helper

    nodes = list(model.graph.node)
    inits = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in nodes for o in n.output}
    pairs = []
    for b in nodes:
        if b.op_type != "Conv":
            continue
        r = producer.get(b.input[0])
        if r is None or r.op_type != "Relu" or len(consumers.get(r.output[0], [])) != 1:
            continue
        a = producer.get(r.input[0])
        if a is None or a.op_type != "Conv" or len(consumers.get(a.output[0], [])) != 1:
            continue
        pairs.append((a, b))
    arr = {}
    for n in nodes:
        if n.op_type == "Conv":
            arr[n.input[1]] = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
            arr[n.input[2]] = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)

    def spread(w):
        r = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        return float(r.max() / max(r.mean(), 1e-12))

    before = [spread(arr[a.input[1]]) for a, _ in pairs]
    for _ in range(iterations):
        for a, b in pairs:
            wa, ba, wb = arr[a.input[1]], arr[a.input[2]], arr[b.input[1]]
            r1 = np.abs(wa).reshape(wa.shape[0], -1).max(axis=1)
            r2 = np.abs(wb).transpose(1, 0, 2, 3).reshape(wb.shape[1], -1).max(axis=1)
            sc = np.sqrt(np.maximum(r1, 1e-12) / np.maximum(r2, 1e-12))
            sc = np.where((r1 > 1e-12) & (r2 > 1e-12), sc, 1.0)
            arr[a.input[1]] = wa / sc[:, None, None, None]
            arr[a.input[2]] = ba / sc
            arr[b.input[1]] = wb * sc[None, :, None, None]
    after = [spread(arr[a.input[1]]) for a, _ in pairs]
    for name, v in arr.items():
        inits[name].CopyFrom(numpy_helper.from_array(v.astype(np.float32), name))
    return list(zip(before, after))


class _Reader:
    """onnxruntime CalibrationDataReader over a list of arrays."""

    def __init__(self, name: str, arrays: list[np.ndarray]):
        self.name = name
        self.it = iter(arrays)

    def get_next(self):
        a = next(self.it, None)
        return None if a is None else {self.name: a}

    def rewind(self):  # pragma: no cover - not used by MinMax
        pass


def calibration_data(kind: str, args, n: int, seed: int = 0) -> list[np.ndarray]:
    """~n train-split inputs: detector = normalised full frames (raw and 8-bit variants),
    classifier = module crops from the train frames plus ISM train crops."""
    rng = np.random.default_rng(seed)
    split = load_split()
    frames = split_frames(load_pv_frames(args.data, args.work), split, "train")
    out = []
    if kind == "detector":
        idx = rng.choice(len(frames), size=min(n, len(frames)), replace=False)
        for j, i in enumerate(idx):
            f = frames[i]
            img = normalise(f.raw) if j % 3 else normalise(f.visible)
            out.append(img[None, None].astype(np.float32))
    else:
        for i in rng.choice(len(frames), size=min(n // 2, len(frames)), replace=False):
            f = frames[i]
            q = f.quads[rng.integers(len(f.quads))]
            out.append(crop_module(f.raw, q)[None, None])
        ids, images, _ = load_ism(args.data, args.work)
        val = set(split["ism"]["val_ids"])
        tr = [i for i, k in enumerate(ids) if int(k) not in val]
        for i in rng.choice(tr, size=n - len(out), replace=False):
            out.append(normalise(images[i])[None, None])
    return out


def quantize(f32_path: Path, int8_path: Path, kind: str, calib: list[np.ndarray], meta: dict[str, str],
             keep_head_float: bool = True, reduce_range: bool = True, keep_first_float: bool = False) -> None:
    """quantize_static, QOperator, per-tensor, Conv/Relu only (activations u8, weights s8).

    The last conv (the head) is kept in float when keep_head_float: it is cheap and the
    corner regression would otherwise be quantised to ~2 px steps.

    keep_first_float (classifier): the first conv (1 -> 16, 3x3, 0.14 M MAC) stays float. Quantised,
    it shifted the defect logit by +1.3 on average (same in onnxruntime and in the exact onnx
    reference evaluator, so a property of the quantised model, not of a kernel); with it in
    float the int8 classifier agrees with f32 on 99.6 % of defect decisions.

    reduce_range: weights use 7 bits ([-64, 63], still int8 tensors). Without it, u8 x s8
    kernels that sum pairs of products in int16 (x86 AVX2 without VNNI: VPMADDUBSW, which
    onnxruntime uses on this machine) saturate and the detector collapses (AP50 0.87 -> 0.09
    in onnxruntime). 7-bit weights cannot overflow (2 * 255 * 64 < 32768) on any backend."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    m = onnx.load(str(f32_path))
    convs = [n.name for n in m.graph.node if n.op_type == "Conv"]
    exclude = ([convs[-1]] if keep_head_float else []) + ([convs[0]] if keep_first_float else [])
    name = m.graph.input[0].name
    quantize_static(str(f32_path), str(int8_path), _Reader(name, calib), quant_format=QuantFormat.QOperator,
                    per_channel=False, op_types_to_quantize=["Conv", "Relu"], activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=exclude, reduce_range=reduce_range)
    q = onnx.load(str(int8_path))
    q.producer_name = "pvtherm_train"
    set_metadata(q, meta)
    onnx.checker.check_model(q)
    onnx.save(q, str(int8_path))


def classifier_calibration(frames, split, args, n: int = 200, seed: int = 0) -> list[np.ndarray]:
    """n calibration crops: half module crops (annotated quads, raw) of `frames`, half ISM train crops."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(frames), size=n // 2, replace=True):
        f = frames[i]
        out.append(crop_module(f.raw, f.quads[rng.integers(len(f.quads))])[None, None])
    ids, images, _ = load_ism(args.data, args.work)
    val = set(split["ism"]["val_ids"])
    tr = [i for i, k in enumerate(ids) if int(k) not in val]
    for i in rng.choice(tr, size=n - len(out), replace=False):
        out.append(normalise(images[i])[None, None])
    return out


def export_classifier_files(model: torch.nn.Module, out_dir: Path, meta: dict[str, str], frames, split, args,
                            n_calib: int = 200) -> tuple[Path, Path]:
    """f32 + int8 classifier ONNX files (pvtherm-classifier-{f32,int8}.onnx) in out_dir.

    A ResClassifier exports through its export_module (pool + 1x1 folded into one conv)."""
    model = model.eval()
    m = model.export_module() if hasattr(model, "export_module") else model
    out_dir = Path(out_dir)
    f32 = out_dir / "pvtherm-classifier-f32.onnx"
    i8 = out_dir / "pvtherm-classifier-int8.onnx"
    export_f32(m, "classifier", f32, meta)
    quantize(f32, i8, "classifier", classifier_calibration(frames, split, args, n_calib), meta,
             keep_first_float=True)
    return f32, i8


def check_ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pvtherm_train.export")
    ap.add_argument("kind", choices=["detector", "classifier"])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--threshold", type=float, required=True,
                    help="detector: pvtherm.score_threshold; classifier: pvtherm.defect_threshold")
    ap.add_argument("--version", help="semver (default: the module constant)")
    ap.add_argument("--calib", type=int, default=30, help="number of calibration inputs")
    ap.add_argument("--out-dir", default=str(MODELS))
    ap.add_argument("--quant-head", action="store_true", help="also quantise the last conv")
    ap.add_argument("--no-equalize", action="store_true", help="skip cross-layer equalisation")
    ap.add_argument("--full-range", action="store_true",
                    help="8-bit weights instead of 7-bit (saturates on AVX2 without VNNI, see quantize())")
    add_data_args(ap)
    args = ap.parse_args(argv)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.kind == "detector":
        model = load_detector(args.ckpt)
        meta = {"pvtherm.kind": "detector", "pvtherm.name": "pvtherm-detector",
                "pvtherm.version": args.version or DET_VERSION, "pvtherm.stride": "8",
                "pvtherm.corner_scale": "32", "pvtherm.score_threshold": f"{args.threshold:g}"}
        x = np.zeros((1, 1, 512, 640), np.float32)
    else:
        model = load_classifier(args.ckpt)
        meta = {"pvtherm.kind": "classifier", "pvtherm.name": "pvtherm-classifier",
                "pvtherm.version": args.version or CLS_VERSION, "pvtherm.defect_threshold": f"{args.threshold:g}",
                "pvtherm.classes": ",".join(__import__("pvtherm_train.data", fromlist=["ISM_CLASSES"]).ISM_CLASSES)}
        x = np.zeros((1, 1, 40, 24), np.float32)
    f32 = out_dir / f"pvtherm-{args.kind}-f32.onnx"
    i8 = out_dir / f"pvtherm-{args.kind}-int8.onnx"
    export_f32(model.export_module() if hasattr(model, "export_module") else model, args.kind, f32, meta,
               equalize=not args.no_equalize)
    calib = calibration_data(args.kind, args, args.calib)
    quantize(f32, i8, args.kind, calib, meta, keep_head_float=not args.quant_head,
             reduce_range=not args.full_range, keep_first_float=(args.kind == "classifier"))
    # sanity: ORT vs torch on a calibration input
    x = calib[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    a = check_ort(f32, x)
    b = check_ort(i8, x)
    print(f"{f32.name}: {f32.stat().st_size} B, max |ort - torch| = {np.abs(a - ref).max():.2e}")
    print(f"{i8.name}: {i8.stat().st_size} B, max |int8 - f32| = {np.abs(b - a).max():.3f}, "
          f"mean = {np.abs(b - a).mean():.4f}")
    print("int8 ops:", sorted({n.op_type for n in onnx.load(str(i8)).graph.node}))


if __name__ == "__main__":
    main()
