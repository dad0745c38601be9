"""A GGUF rewritten with its matrices in another weight type, from its own dequantized values.

    python tools/requantize_gguf.py SRC.gguf DST.gguf --type Q8_0      # or F16, Q4_0, Q5_0, ...

Every metadata field is copied; every 2-D tensor is dequantized (lmzip's gguf/derive.py dequantize) and
quantized again by the `gguf` package; vectors stay F32. For checking that lmzip's derivation of
a model does not depend on how its GGUF stores it (benchmarks/requantized.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmzip.models.gguf.derive import dequantize, read_gguf  # noqa: E402


def requantize(source: Path, target: Path, kind: str) -> None:
    import gguf

    reader = read_gguf(source)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(target), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the writer writes those itself
        sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), field.types[0], sub_type)
    quant = gguf.GGMLQuantizationType[kind]
    for tensor in reader.tensors:
        values = dequantize(tensor).astype(np.float32)
        if values.ndim == 2 and kind != "F32":
            data = gguf.quants.quantize(values, quant)
            writer.add_tensor(tensor.name, data, raw_dtype=None if kind == "F16" else quant)
        else:
            writer.add_tensor(tensor.name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--type", default="Q8_0", help="F32, F16, Q8_0, Q4_0, Q5_0, ... (what gguf.quants writes)")
    args = parser.parse_args()
    requantize(args.source, args.target, args.type)
    print(f"wrote {args.target} ({args.target.stat().st_size:,} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
