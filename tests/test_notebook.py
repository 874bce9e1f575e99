"""``notebooks/review_sweep.ipynb``, executed cell by cell in a real Jupyter kernel against a finished sweep."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from svhn_sweep.core.evaluation import confusion_matrix, load_test_predictions, top_confusions
from svhn_sweep.review.results import final_metrics, load_sweep
from tests.conftest import REPO, Sweep, cli_env

NOTEBOOK = REPO / "notebooks" / "review_sweep.ipynb"


def test_the_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_the_notebook_shows_the_sweep_inline(sweep: Sweep) -> None:
    """Tables as HTML, figures as PNG: the trials, the history, the importances, the learning curves, the
    confusion matrix and one error gallery per frequent mistake; no cell fails.
    """
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute(env=cli_env(SVHN_SWEEP_DIR=str(sweep.dir)))  # raises CellExecutionError on a failing cell

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    html = "\n".join(o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {}))
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    trials = load_sweep(sweep.dir)
    for row in trials.itertuples():
        assert f"<td>{row.state}</td>" in html  # the trials table
    final = final_metrics(sweep.dir)
    assert f"<th>test_accuracy</th>\n      <td>{final['test_accuracy']}</td>" in html  # the final retrain
    predictions, truth = load_test_predictions(sweep.dir / "final")
    galleries = len(top_confusions(confusion_matrix(predictions, truth), 3))
    # history, importances, learning curves, confusion matrix, the galleries
    assert len(figures) == 4 + galleries
    # the final model, loaded and asked about the first test images, agrees with its stored predictions
    shown = re.findall(r"<td>(\d)</td>\s*<td>(\d)</td>\s*<td>[\d.]+</td>", html)
    assert [(int(t), int(p)) for t, p in shown] == list(zip(truth[:8], predictions[:8], strict=True))
