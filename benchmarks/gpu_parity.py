"""Parity of the packed path on a device before timing it: golden tiny model and a random medium model.

    python -m benchmarks.gpu_parity --device cuda --json out.json        (also runs with --device cpu)
    python -m benchmarks.gpu_parity --device cpu --bf16 --small          (the dry run: stand-in kernel)

Checks, each printed as PASS/FAIL with its number:
  * golden tiny model, fp32: packed and padded vs the reference vectors (max abs diff, tolerance 1e-5
    on normalized vectors; on CUDA fp32 packing uses the SDPA loop), and late chunking (a list, and a
    long document through windows) vs its golden vectors;
  * golden tiny model, bf16 (CUDA, or ``--bf16``): packed (varlen kernel) and padded vs the fp32
    golden: min cosine > 0.999, and packed vs padded; the same for a task resident in the weights
    (merged) and for a few texts of another task (the low-rank correction path); late chunking;
  * random medium model in the device dtype: packed vs padded over mixed lengths up to 8192 tokens:
    min cosine > 0.999 (bf16) — attention really confined to each sequence;
  * the encode pipeline (background tokenisation, lagged readback) on more texts than one chunk:
    the same vectors as the golden file, row for row;
  * how many times one packed forward + pooling makes the host wait for the device, with where: on
    CUDA ``torch.cuda.set_sync_debug_mode``; on the CPU (dry run) the reads of a tensor's values
    (``tolist``/``item``) that would be such waits on CUDA. Must be 0: then the next batch queues
    behind this one.
Exit code 0 even on FAIL (the caller decides); the JSON has every number.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "tiny-v3"
TASKS = ["retrieval.query", "retrieval.passage", "text-matching"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def encode_both(encoder, texts, task):
    """The same texts through the padded and the packed path of one Encoder."""
    padded = encoder.with_options(packed=False).encode(texts, task=task)
    packed = encoder.with_options(packed=True).encode(texts, task=task)
    return padded, packed


def count_host_waits(model, ids, device) -> dict:
    """Synchronisations in one packed forward + pooling (not the final read back), with the first
    lines of where they happen: each one stops the host from queuing the next batch early."""
    import traceback
    import warnings

    from jinav3.packing import pooled_packed

    pooled_packed(model, ids, device)  # warm: lazy initialisation is not the steady state
    if device.type != "cuda":  # the CPU never waits: count what would wait on CUDA, reads of values
        where = []
        originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "item")}

        def spy(name):
            def read(self, *args, **kwargs):
                caller = sys._getframe(1).f_code.co_filename
                if not caller.endswith("varlen_standin.py"):  # the stand-in kernel's own reads are not ours
                    where.append(f"Tensor.{name} at " + traceback.format_stack(limit=2)[0].strip().splitlines()[0])
                return originals[name](self, *args, **kwargs)
            return read

        try:
            for name in originals:
                setattr(torch.Tensor, name, spy(name))
            pooled_packed(model, ids, device)
        finally:
            for name, original in originals.items():
                setattr(torch.Tensor, name, original)
        print(f"INFO  reads of device values in one packed forward + pooling (CPU): {len(where)}", *where[:5],
              sep="\n  ", flush=True)
        return {"count": len(where), "where": where[:20], "how": "Tensor.tolist/item calls (CPU)"}
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            pooled_packed(model, ids, device)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    where = [str(w.message).splitlines()[0][:200] for w in caught if "synchroniz" in str(w.message).lower()]
    print(f"INFO  host waits in one packed forward + pooling: {len(where)}", *where[:5], sep="\n  ", flush=True)
    return {"count": len(where), "where": where[:20], "how": "torch.cuda.set_sync_debug_mode"}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", dest="json_path")
    p.add_argument("--bf16", action="store_true", help="the bf16 checks off CUDA too (the dry run's stand-in kernel)")
    p.add_argument("--small", action="store_true", help="a smaller random model and rows up to 600 tokens (CPU)")
    args = p.parse_args(argv)
    from jinav3 import Encoder
    from jinav3.packing import forward_pooled_packed, varlen_backend

    device = torch.device(args.device)
    texts = json.loads((GOLDEN / "inputs.json").read_text())["texts"]
    out: dict = {"device": str(device), "checks": {}}

    def check(name, ok, value):
        out["checks"][name] = {"ok": bool(ok), "value": float(value)}
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value:.3g}", flush=True)

    late = json.loads((GOLDEN / "late_chunking.json").read_text())
    long = late["long"]
    dtypes = [torch.float32] + ([torch.bfloat16] if device.type == "cuda" or args.bf16 else [])
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        try:
            encoder = Encoder.from_pretrained(GOLDEN, device=device, dtype=dtype)
            out[f"backend_{name}"] = varlen_backend(device, dtype)
            print(f"golden tiny, {name}: packed attention backend {out[f'backend_{name}']}", flush=True)
            for task in TASKS:
                want = np.load(GOLDEN / f"encode_{task}.npy")
                padded, packed = encode_both(encoder, texts, task)
                if dtype == torch.float32:
                    max_abs = np.abs(packed - want).max()
                    check(f"tiny {name} {task} packed vs golden (max abs)", max_abs <= 1e-5, max_abs)
                    max_abs = np.abs(padded - want).max()
                    check(f"tiny {name} {task} padded vs golden (max abs)", max_abs <= 1e-5, max_abs)
                else:
                    cos = cosines(packed, want).min()
                    check(f"tiny {name} {task} packed vs golden (min cos)", cos > 0.999, cos)
                    cos = cosines(padded, want).min()
                    check(f"tiny {name} {task} padded vs golden (min cos)", cos > 0.999, cos)
                    cos = cosines(packed, padded).min()
                    check(f"tiny {name} {task} packed vs padded (min cos)", cos > 0.999, cos)
            # late chunking: a list as one document, and a long document through 64-token windows
            got = encoder.encode(late["texts"], task="retrieval.passage", late_chunking=True)
            want = np.load(GOLDEN / "late_chunking_normalized.npy")
            document = long["full_input"][len(late["instruction"]):]
            chunks = encoder.late_chunk(document, task="retrieval.passage", chunker="tokens",
                                        chunk_size=long["chunk_tokens"], window=long["macro_chunk_size"],
                                        overlap=long["overlap"], normalize=False)
            long_got = np.stack([c.embedding for c in chunks])
            long_want = np.load(GOLDEN / "long_late_chunking.npy")
            if dtype == torch.float32:
                check(f"tiny {name} late chunking vs golden (max abs)", np.abs(got - want).max() <= 1e-5,
                      np.abs(got - want).max())
                check(f"tiny {name} long late chunking vs golden (max abs, unnormalised)",
                      np.abs(long_got - long_want).max() <= 1e-4, np.abs(long_got - long_want).max())
            else:
                check(f"tiny {name} late chunking vs golden (min cos)", cosines(got, want).min() > 0.999,
                      cosines(got, want).min())
                check(f"tiny {name} long late chunking vs golden (min cos)",
                      cosines(long_got, long_want).min() > 0.999, cosines(long_got, long_want).min())
                # the task resident in the weights (merged), then a few texts of another (corrections)
                want = np.load(GOLDEN / "encode_retrieval.query.npy")
                with encoder.adapter("retrieval.query"):
                    pass
                merges = encoder.lora.merges
                got = encoder.encode(texts, task="retrieval.query")
                check(f"tiny {name} merged query adapter vs golden (min cos)", cosines(got, want).min() > 0.999,
                      cosines(got, want).min())
                with encoder.adapter("retrieval.passage"):
                    pass
                got = encoder.encode(texts, task="retrieval.query")
                check(f"tiny {name} query by correction on passage weights vs golden (min cos)",
                      cosines(got, want).min() > 0.999 and encoder.lora.merges == merges + 1,
                      cosines(got, want).min())
            if dtype == torch.float32:  # the pipeline: more texts than one tokenizer chunk, rows in order
                from jinav3.encoder import CHUNK_TEXTS

                repeats = CHUNK_TEXTS // len(texts) + 2
                want = np.tile(np.load(GOLDEN / "encode_retrieval.passage.npy"), (repeats, 1))
                got = encoder.encode(texts * repeats, task="retrieval.passage")
                check(f"tiny {name} pipeline, {len(want)} texts vs golden (max abs)", np.abs(got - want).max() <= 1e-5,
                      np.abs(got - want).max())
            del encoder
        except Exception as error:  # keep going: the report says what broke
            out["checks"][f"tiny {name}"] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            print(f"FAIL  tiny {name}: {type(error).__name__}: {error}", flush=True)
            traceback.print_exc(limit=5)

    try:  # random medium-shaped model (small vocab) in the device's dtype, long and short rows
        from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

        dtype = torch.bfloat16 if device.type == "cuda" or args.bf16 else torch.float32
        torch.manual_seed(0)
        hidden, layers, heads = (128, 2, 4) if args.small else (384, 6, 6)
        config = JinaEmbeddingsV3Config(vocab_size=3000, hidden_size=hidden, num_hidden_layers=layers,
                                        num_attention_heads=heads, intermediate_size=4 * hidden,
                                        rope_parameters={"rope_type": "default", "rope_theta": 20000.0})
        config._attn_implementation = "sdpa"
        model = JinaEmbeddingsV3Model(config).eval()
        with torch.no_grad():
            for layer in model.layers:
                layer.self_attn.q_proj.weight.mul_(4)
                layer.self_attn.k_proj.weight.mul_(4)
        inv_freq = model.rotary_emb.inv_freq.clone()  # rotary frequencies stay float32, as the loader keeps them
        model = model.to(device=device, dtype=dtype)
        model.rotary_emb.inv_freq = inv_freq.to(device)
        rng = np.random.default_rng(0)
        lengths = (600, 7, 300, 120, 2, 513, 400, 64) if args.small else (8192, 7, 300, 120, 2, 513, 4000, 64)
        ids = [[0] + rng.integers(3, 2999, n - 2).tolist() + [2] for n in lengths]
        packed = forward_pooled_packed(model, ids, device)
        padded = []
        with torch.inference_mode():
            for row in ids:  # one at a time: no padding at all in the reference
                hidden = model(input_ids=torch.tensor([row], device=device)).last_hidden_state[0]
                padded.append(hidden.float().mean(0).cpu().numpy())
        padded = np.stack(padded)
        cos = cosines(packed, padded).min()
        check(f"medium {str(dtype).removeprefix('torch.')} packed vs one-by-one (min cos)", cos > 0.999, cos)
        waits = count_host_waits(model, ids, device)
        out["host_waits_per_packed_forward"] = waits
        check(f"medium {str(dtype).removeprefix('torch.')} host waits per packed forward ({waits['how']})",
              waits["count"] == 0, waits["count"])
    except Exception as error:
        out["checks"]["medium"] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        print(f"FAIL  medium: {type(error).__name__}: {error}", flush=True)
        traceback.print_exc(limit=5)

    out["all_ok"] = all(c.get("ok") for c in out["checks"].values())
    print("ALL PASS" if out["all_ok"] else "SOME CHECKS FAILED", flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
