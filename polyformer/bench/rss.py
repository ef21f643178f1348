"""Peak resident memory of one contender on its own: a fresh process loads it and runs one request.

In the process that times every contender, memory freed by one (a float32 copy dequantized on the
way to int8, say) is reused by the next without the resident size growing, so per-contender
memory is measured apart: `peak_rss_mb(kind, model, precision)` runs this module in a new
interpreter, which loads the contender, decodes (or encodes) once, and prints its peak RSS.
`baseline` is the same interpreter with the libraries imported and nothing loaded.

    python -m polyformer.bench.rss decode SmolLM2-135M-Instruct native
    python -m polyformer.bench.rss llama.cpp path/to/file.gguf
"""

from __future__ import annotations

import subprocess
import sys

KINDS = ("baseline", "decode", "encode", "llama.cpp", "onnxruntime")


def peak_rss_mb(kind: str, model: str = "", precision: str = "", threads: int = 2, timeout_s: int = 600) -> float:
    """The peak RSS (MiB) of a new process that loads `model` as `kind` at `precision` and runs once."""
    result = subprocess.run([sys.executable, "-m", "polyformer.bench.rss", kind, str(model), precision, str(threads)],
                            capture_output=True, text=True, timeout=timeout_s, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _run(kind: str, model: str, precision: str, threads: int) -> None:
    import torch

    import polyformer as pf

    torch.set_num_threads(threads)
    prompt = torch.tensor([[100 + i for i in range(32)]])
    if kind == "decode":
        from polyformer.bench.decode import polyformer_decoder

        polyformer_decoder(pf.load(model, dtype=None if precision == "native" else precision))(prompt, 8)
    elif kind == "encode":
        pf.SentenceEncoder.load(model, dtype=precision).encode(["a short sentence to encode"] * 32, show_progress=False)
    elif kind == "llama.cpp":
        from pathlib import Path

        from polyformer.bench.peers import LlamaCppDecoder

        LlamaCppDecoder(Path(model), threads, 1, 64)(prompt, 8)
    elif kind == "onnxruntime":
        from pathlib import Path

        from polyformer.bench.peers import OnnxEncoder

        onnx, folder = model.split("::")
        OnnxEncoder(Path(onnx), Path(folder), threads).encode(["a short sentence to encode"] * 32)


def main(argv: list[str]) -> None:
    kind, model, precision, threads = (argv + ["", "", "", "2"])[:4]
    if kind not in KINDS:
        raise SystemExit(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    _run(kind, model, precision, int(threads or 2))
    from polyformer.bench.timing import peak_rss_mb as own_peak

    print(f"{own_peak():.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
