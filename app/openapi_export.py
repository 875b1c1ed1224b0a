"""Write each frontend's OpenAPI document to `openapi/`, or check the committed ones are current.

`python -m app.openapi_export` (`make openapi`) regenerates them; `--check` exits 1 and names
the files that no longer match the code. The app is built without running its lifespan:
documents come from the routes alone, no database, Redis or backends needed.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.main import DOCUMENTS, create_app
from app.openapi import build_document
from app.settings import Settings

OPENAPI_DIR = Path(__file__).resolve().parents[1] / "openapi"


def render(document: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generated_documents() -> dict[str, str]:
    """File name -> rendered document, for every API document the gateway serves."""
    app = create_app(Settings())
    return {f"{d.slug}.json": render(build_document(app, d)) for d in DOCUMENTS}


def drifted_files(directory: Path = OPENAPI_DIR) -> list[str]:
    """The files in `directory` that are missing or differ from the generated documents."""
    drifted = []
    for name, text in generated_documents().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            drifted.append(str(path))
    return drifted


def write_documents(directory: Path = OPENAPI_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generated_documents().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.openapi_export", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a committed document is out of date"
    )
    parser.add_argument("--dir", type=Path, default=OPENAPI_DIR, help="where the documents live")
    args = parser.parse_args(argv)
    if args.check:
        drifted = drifted_files(args.dir)
        for name in drifted:
            print(f"out of date: {name}", file=sys.stderr)
        if drifted:
            print("run `make openapi` and commit the result", file=sys.stderr)
            return 1
        print("OpenAPI documents are up to date")
        return 0
    for written in write_documents(args.dir):
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
