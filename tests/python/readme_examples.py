"""Runs the README's Python examples (every ```python block that reads out/fashion-mnist) against a
real run's output folder, so the README cannot drift from what actopo writes.

Usage: readme_examples.py OUTPUT_DIR. Each block runs with `out/fashion-mnist` replaced by OUTPUT_DIR;
then the pandas and Polars readings of the summary table must agree on rows and columns.
Prints 'readme: N passed, M failed'; exit code 1 on any failure.
"""

import re
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def blocks():
    text = (ROOT / "README.md").read_text()
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "out/fashion-mnist" in b]


def main():
    out = sys.argv[1]
    passed = failed = 0
    scope = {}
    found = blocks()
    if not any("import pandas" in b for b in found) or not any("import polars" in b for b in found):
        print("readme: expected a Polars and a pandas example reading out/fashion-mnist")
        failed += 1
    for i, block in enumerate(found):
        try:
            exec(block.replace("out/fashion-mnist", out), scope)
            passed += 1
        except Exception:
            failed += 1
            print(f"readme: example {i + 1} failed:\n{block}")
            traceback.print_exc()
    if "summary" in scope and "summary_pd" in scope:
        pl_df, pd_df = scope["summary"], scope["summary_pd"]
        same = pl_df.height == len(pd_df) and pl_df.columns == list(pd_df.columns)
        print(f"readme: Polars {pl_df.shape} vs pandas {pd_df.shape}: {'same' if same else 'DIFFERENT'}")
        passed, failed = (passed + 1, failed) if same else (passed, failed + 1)
    print(f"readme: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
