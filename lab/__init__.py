"""The assessment accuracy lab: grade a labelled dataset of student programs and measure the grades.

`python -m lab.evaluate DATASET` is the command (see `lab.evaluate`).
Its steps are one module each: `dataset` (load and validate the folder), `provider` (the model's
provider, chosen as POST /assessment chooses it), `cache` (model answers on disk), `runner` (grade
every student through `grader.assess`, in parallel, with a `progress` bar), `batch` (`--batch`:
every request in one Batch API batch, waited for), `cost` (the run's tokens priced), `metrics` (accuracy,
confusion matrices, kappa), `summary` (the JSON summary), `thresholds` (the CI gate), `confidence`
(confidence.json, a level per key concept) and `report` (writes the files; the HTML report comes
from `templates/report.html`).
"""
