"""The chat sent to the model: the grader's instructions, few-shot examples, then the program."""

from __future__ import annotations

from collections.abc import Iterable

# Asked of the model when the caller wants JSON rows (`response-type=json`).
JSON_INSTRUCTION = (
    "Answer with a JSON array only, no other text: one object per key concept of the rubric, "
    'with the keys "Key Concept", "Observations", "Grade" and "Reason".'
)


def system_message(prompt: str, rubric_csv: str, response_type: str = "tsv") -> str:
    message = f"{prompt.strip()}\n\nRubric:\n{rubric_csv.strip()}\n"
    return message + f"\n{JSON_INSTRUCTION}\n" if response_type == "json" else message


def build_messages(
    prompt: str,
    rubric_csv: str,
    examples: Iterable[tuple[str, str]],
    code: str,
    *,
    response_type: str = "tsv",
) -> list[dict[str, str]]:
    """One system message (prompt + rubric), a user/assistant pair per example, the code last."""
    messages = [{"role": "system", "content": system_message(prompt, rubric_csv, response_type)}]
    for example_code, example_answer in examples:
        messages.append({"role": "user", "content": example_code})
        messages.append({"role": "assistant", "content": example_answer})
    messages.append({"role": "user", "content": code})
    return messages
