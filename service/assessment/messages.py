"""The chat sent to the model: the grader's instructions, few-shot examples, then the program."""

from __future__ import annotations

from collections.abc import Iterable


def system_message(prompt: str, rubric_csv: str) -> str:
    return f"{prompt.strip()}\n\nRubric:\n{rubric_csv.strip()}\n"


def build_messages(
    prompt: str, rubric_csv: str, examples: Iterable[tuple[str, str]], code: str
) -> list[dict[str, str]]:
    """One system message (prompt + rubric), a user/assistant pair per example, the code last."""
    messages = [{"role": "system", "content": system_message(prompt, rubric_csv)}]
    for example_code, example_answer in examples:
        messages.append({"role": "user", "content": example_code})
        messages.append({"role": "assistant", "content": example_answer})
    messages.append({"role": "user", "content": code})
    return messages
