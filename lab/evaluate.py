"""The assessment accuracy lab: `python -m lab.evaluate DATASET [options]`.

Grades every student program of a labelled dataset through `grader.assess` (the code path of
POST /assessment), compares the grades with the human labels, and writes `report.html`,
`summary.json` and `confidence.json` (HIGH, MEDIUM or LOW per key concept, for the clients that
show it to teachers: `lab.confidence`). With thresholds it exits 1 when a measure falls short, so
it can gate a prompt change in CI. docs/accuracy-lab.md explains the dataset,
the measures and cost; docs/accuracy-lab-report.md the report and confidence.json.

With `--batch` every request goes to the provider in one batch, at the batch price (`lab.batch`).

Exit status: 0 done (and every threshold met), 1 a threshold not met, 2 bad dataset, option,
thresholds file or setting, 3 no student could be graded (or the batch failed), 130 interrupted
(Ctrl-C; a batch waited for is cancelled).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab import thresholds as gate
from lab.batch import BatchAnswers, BatchFailed, BatchRun, Collector
from lab.cache import AnswerCache, cache_key
from lab.cost import price_table, run_cost
from lab.dataset import Dataset, DatasetError, load_dataset
from lab.provider import Provider, provider_for
from lab.report import decimal, describe_cost, percent, write_outputs
from lab.runner import Parameters, grade_all, grade_student
from lab.summary import build_summary
from service.assessment.fields import MAX_RESPONSES, MAX_TEMPERATURE
from service.config.setting import SettingsError
from service.config.settings import load_settings
from service.gateway.providers.openai import OpenAICompatible

DEFAULT_OUTPUT = Path("evaluation-output")
DEFAULT_CACHE = Path(".assessment-cache")
EXIT_OK, EXIT_BELOW_THRESHOLD, EXIT_USAGE, EXIT_NOTHING_GRADED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(Exception):
    """A problem with what the command was given; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.evaluate",
        description="Grade a labelled dataset of student programs as POST /assessment does and measure "
        "how well the grades agree with the labels.",
        epilog="The provider key and upstream come from the same settings as the server (OPENAI_API_KEY, "
        "OPENAI_BASE_URL; environment, then config.txt).",
    )
    parser.add_argument(
        "dataset", type=Path, help="dataset folder (prompt.txt, rubric.csv, labels.csv, students/)"
    )
    grading = parser.add_argument_group(
        "grading (default: the dataset's params.json, then the server's defaults)"
    )
    grading.add_argument(
        "--model",
        help="model, an alias or bedrock/<id> as in POST /assessment (default: AIPROXY_ASSESSMENT_MODEL)",
    )
    grading.add_argument(
        "--temperature", type=float, metavar="T", help="sampling temperature, 0 to 2 (default 0.2)"
    )
    grading.add_argument(
        "--num-responses", type=int, metavar="N", help="answers asked for per student; they vote (default 1)"
    )
    grading.add_argument(
        "--remove-comments",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="strip JavaScript comments before grading (default: no)",
    )
    choice = parser.add_argument_group("which students")
    choice.add_argument(
        "--students", action="append", metavar="NAME[,NAME...]", help="grade only these students (repeatable)"
    )
    choice.add_argument("--sample", type=int, metavar="N", help="grade a random sample of N students")
    choice.add_argument(
        "--seed", type=int, metavar="S", default=0, help="seed of the random sample (default 0: same sample)"
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--workers", type=int, metavar="N", default=4, help="students graded in parallel (default 4)"
    )
    run.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="folder of report.html, summary.json and confidence.json "
        f"(default {DEFAULT_OUTPUT}/<dataset>-<time>)",
    )
    run.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        default=DEFAULT_CACHE,
        help=f"answer cache (default {DEFAULT_CACHE})",
    )
    run.add_argument("--no-cache", action="store_true", help="neither read nor write cached answers")
    run.add_argument(
        "--refresh-cache", action="store_true", help="ask the model again and overwrite the cache"
    )
    run.add_argument(
        "--batch",
        action="store_true",
        help="send every request in one batch (OpenAI's Batch API, at its lower price) and wait for it",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--verbose", action="store_true", help="log each graded student and dropped answer")
    limits = parser.add_argument_group("thresholds (exit status 1 when one is not met)")
    limits.add_argument(
        "--thresholds", type=Path, metavar="FILE", help="JSON file of thresholds (see docs/accuracy-lab.md)"
    )
    limits.add_argument("--min-accuracy", type=float, metavar="X", help="overall exact-match accuracy, 0-1")
    limits.add_argument(
        "--min-pass-fail-accuracy", type=float, metavar="X", help="overall pass/fail accuracy"
    )
    limits.add_argument(
        "--min-kappa", type=float, metavar="X", help="overall quadratic-weighted kappa, -1 to 1"
    )
    limits.add_argument(
        "--min-concept-accuracy", type=float, metavar="X", help="accuracy of every key concept"
    )
    limits.add_argument(
        "--min-concept-pass-fail-accuracy",
        type=float,
        metavar="X",
        help="pass/fail accuracy of every key concept",
    )
    limits.add_argument("--max-failed", type=int, metavar="N", help="most failed assessments allowed")
    return parser


def choose_students(
    dataset: Dataset, names: Sequence[str] | None, sample: int | None, seed: int
) -> list[str]:
    students = dataset.students
    if names:
        wanted = [n.strip() for group in names for n in group.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in dataset.labels]
        if unknown:
            raise UsageError(f"--students: not in labels.csv: {', '.join(unknown)}.")
        chosen = set(wanted)
        students = [s for s in students if s in chosen]
    if sample is not None:
        if not 1 <= sample <= len(students):
            raise UsageError(f"--sample {sample}: choose from 1 to {len(students)} students.")
        picked = set(random.Random(seed).sample(students, sample))
        students = [s for s in students if s in picked]  # keep the dataset's order
    return students


def choose_parameters(args: argparse.Namespace, dataset: Dataset, default_model: str) -> Parameters:
    params = dataset.params

    def pick(flag: Any, name: str, default: Any) -> Any:
        return flag if flag is not None else params.get(name, default)

    parameters = Parameters(
        model=pick(args.model, "model", default_model),
        temperature=float(pick(args.temperature, "temperature", 0.2)),
        num_responses=int(pick(args.num_responses, "num-responses", 1)),
        remove_comments=bool(pick(args.remove_comments, "remove-comments", False)),
    )
    if not 0 <= parameters.temperature <= MAX_TEMPERATURE:
        raise UsageError(
            f"--temperature {parameters.temperature:g}: use a number from 0 to {MAX_TEMPERATURE:g}."
        )
    if not 1 <= parameters.num_responses <= MAX_RESPONSES:
        raise UsageError(
            f"--num-responses {parameters.num_responses}: use a whole number from 1 to {MAX_RESPONSES}."
        )
    return parameters


def choose_thresholds(args: argparse.Namespace) -> dict[str, float]:
    limits = gate.load_thresholds(args.thresholds) if args.thresholds else {}
    flags = {
        "accuracy": args.min_accuracy,
        "pass_fail_accuracy": args.min_pass_fail_accuracy,
        "kappa": args.min_kappa,
        "concept_accuracy": args.min_concept_accuracy,
        "concept_pass_fail_accuracy": args.min_concept_pass_fail_accuracy,
        "max_failed": args.max_failed,
    }
    limits.update(gate.validate({k: v for k, v in flags.items() if v is not None}, "flags"))
    return limits


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return run(args)
    except (UsageError, DatasetError, gate.ThresholdsError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BatchFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOTHING_GRADED
    except KeyboardInterrupt:
        print("\ninterrupted: no report written; the answers received so far are cached", file=sys.stderr)
        return EXIT_INTERRUPTED


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise UsageError("--workers: use 1 or more.")
    limits = choose_thresholds(args)
    dataset = load_dataset(args.dataset)
    settings = load_settings()
    parameters = choose_parameters(args, dataset, settings.assessment_model)
    students = choose_students(dataset, args.students, args.sample, args.seed)
    if dataset.unlabelled:
        print(f"note: not graded, no row in labels.csv: {', '.join(dataset.unlabelled)}", file=sys.stderr)

    provider = provider_for(parameters.model, settings)
    parameters = dataclasses.replace(parameters, model=provider.model)
    cache = AnswerCache(
        args.cache_dir,
        provider.location,
        read=not (args.no_cache or args.refresh_cache),
        write=not args.no_cache,
    )
    print(
        f"Grading {len(students)} student{'' if len(students) == 1 else 's'} of {dataset.name} "
        f"with {parameters.model} "
        f"(num-responses {parameters.num_responses}, temperature {parameters.temperature:g})",
        file=sys.stderr,
    )
    complete = provider.complete
    batch: BatchAnswers | None = None
    if args.batch:
        batch = _through_batch(args, dataset, students, parameters, provider, cache)
        complete = batch.complete(lambda body: cache_key(body, provider.location))
    results = grade_all(
        dataset,
        students,
        parameters,
        cache.wrap(complete),
        agent=provider.agent,
        workers=args.workers,
        show_progress=not (args.quiet or args.batch),  # a batch had its own bar
    )
    deployment = provider.deployment
    cost = run_cost(
        price_table(settings),
        [f"{deployment.provider.name}/{deployment.model}", parameters.model, deployment.model],
        cache.usage,
        cache.fresh_usage,
        batch=args.batch,
    )
    summary = build_summary(
        dataset,
        parameters,
        results,
        selection={
            "students": len(students),
            "sample": args.sample,
            "seed": args.seed if args.sample else None,
        },
        calls={"upstream": cache.upstream, "cached": cache.cached},
        usage=cache.usage,
        fresh_usage=cache.fresh_usage,
        cost=cost,
        batch=None if batch is None else batch.as_json(),
    )
    checks = gate.check(limits, summary)
    summary["thresholds"] = {
        "limits": limits,
        "checks": [c.as_json() for c in checks],
        "passed": all(c.passed for c in checks),
    }
    output = args.output or DEFAULT_OUTPUT / f"{dataset.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    try:
        outputs = write_outputs(summary, output)
    except OSError as error:
        raise UsageError(f"--output {output}: cannot write the report ({error.strerror or error}).") from None
    _print_summary(summary, checks)
    print(f"Report: {outputs.report}\nSummary: {outputs.summary}\nConfidence: {outputs.confidence}")

    if not summary["students"]["graded"]:
        first = summary["failed"][0]["message"] if summary["failed"] else "no student was chosen"
        print(f"error: no student could be graded; the first failure: {first}", file=sys.stderr)
        return EXIT_NOTHING_GRADED
    return EXIT_OK if summary["thresholds"]["passed"] else EXIT_BELOW_THRESHOLD


def _through_batch(
    args: argparse.Namespace,
    dataset: Dataset,
    students: list[str],
    parameters: Parameters,
    provider: Provider,
    cache: AnswerCache,
) -> BatchAnswers:
    """Every request the run makes, sent in one batch and waited for: the batch's answers."""
    upstream = provider.deployment.provider
    if not isinstance(upstream, OpenAICompatible):
        raise UsageError(
            f"--batch: {parameters.model} is served by {upstream.name}, which has no Batch API here; "
            "grade it without --batch."
        )
    collector = Collector()
    for student in students:
        grade_student(dataset, student, parameters, collector, provider.agent)
    print(
        f"Collected {len(collector.bodies)} grading request{'' if len(collector.bodies) == 1 else 's'} "
        f"of {len(students)} student{'' if len(students) == 1 else 's'} for a batch",
        file=sys.stderr,
    )
    batch = BatchRun(upstream, provider.deployment.model, cache, show_progress=not args.quiet)
    return batch.run(collector.bodies)


def _print_summary(summary: dict[str, Any], checks: list[gate.Check]) -> None:
    overall = summary["overall"]
    students = summary["students"]
    lines = [
        f"Students: {students['graded']} graded, {students['failed']} failed",
        f"Accuracy: {percent(overall['accuracy'])} exact, "
        f"{percent(overall['pass_fail_accuracy'])} pass/fail, kappa {decimal(overall['kappa'])}",
    ]
    for concept, measures in summary["per_concept"].items():
        lines.append(
            f"  {concept}: {percent(measures['accuracy'])} exact, {percent(measures['pass_fail_accuracy'])} "
            f"pass/fail, kappa {decimal(measures['kappa'])}"
        )
    shown = 10  # the report lists every failure; the terminal needs only the first few
    for failure in summary["failed"][:shown]:
        lines.append(f"Failed: {failure['student']} ({failure['status']}): {failure['message']}")
    if len(summary["failed"]) > shown:
        lines.append(f"... and {len(summary['failed']) - shown} more failures (see the report)")
    usage, calls = summary["usage"], summary["calls"]
    lines.append(
        f"Tokens: {usage['total_tokens']} ({usage['prompt_tokens']} prompt, "
        f"{usage['completion_tokens']} completion); "
        f"model calls: {calls['upstream']} upstream, {calls['cached']} cached"
    )
    lines.append(describe_cost(summary))
    lines += [check.describe() for check in checks]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
