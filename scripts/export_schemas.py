"""Write the JSON Schemas of the result files to docs/schemas/ (``--check``: only report stale ones).

    python scripts/export_schemas.py          # (re)write docs/schemas/*.schema.json
    python scripts/export_schemas.py --check  # exit 1 if a committed schema is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from kvasir_ml.results_schema import ComparisonFile, MetricsFile, PredictionRecord

OUT = Path(__file__).resolve().parents[1] / "docs" / "schemas"
MODELS: dict[str, type[BaseModel]] = {"metrics": MetricsFile, "comparison": ComparisonFile, "prediction": PredictionRecord}


def schema_texts() -> dict[str, str]:
    """``{file name: JSON Schema text}`` for every result file."""
    return {f"{name}.schema.json": json.dumps(model.model_json_schema(by_alias=True), indent=1) + "\n"
            for name, model in MODELS.items()}


def stale_files(out: Path = OUT, write: bool = False) -> list[str]:
    """The schema files that differ from the models (rewritten when ``write``)."""
    stale = []
    for name, text in schema_texts().items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
            if write:
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="report stale schemas, write nothing")
    args = p.parse_args(argv)
    stale = stale_files(write=not args.check)
    print(json.dumps({"stale" if args.check else "written": stale}))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
