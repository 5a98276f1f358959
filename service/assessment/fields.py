"""The fields of an assessment request, each declared once: its HTTP name, how it is read (and
what a wrong value is told), its default, its limits, its description and its OpenAPI schema.

`request.read_request` reads with these declarations and the OpenAPI document
(`service.edge.openapi`) describes them, so the two cannot disagree. Fields arrive as text (forms,
query strings: `text_schema`) or as JSON values (`json_schema`); null, absent and, for the
options, blank text mean the default.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from service.assessment import patterns
from service.core.errors import RequestRejected, quoted

# A student program is a few kilobytes; these bound what one request can make the worker do
# (comment removal and answer checking are pure Python: docs/assessment.md, "Limits").
MAX_CODE_CHARS = 200_000
MAX_GRADED_CHARS = 1_000_000  # the program, the prompt, the rubric and every example together
MAX_RUBRIC_ROWS = 200
MAX_EXAMPLES = 50
MAX_RESPONSES = 10
MAX_TEMPERATURE = 2.0
MAX_STUDENT_ID = 200
RESPONSE_TYPES = ("tsv", "json")
# Longer number text is refused before it is converted: every limit here is a few digits, and
# int() of thousands of digits is slow (and refused by Python past 4,300).
MAX_NUMBER_CHARS = 30

_WHOLE = re.compile(r"[+]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")

Fields = Mapping[str, Any]
T = TypeVar("T")  # what an Option reads


@dataclass(frozen=True, kw_only=True)
class Field:
    name: str
    description: str

    def read(self, fields: Fields) -> Any:
        raise NotImplementedError

    def text_schema(self) -> dict[str, Any]:
        return {"type": "string", "description": self.description}

    def json_schema(self) -> dict[str, Any]:
        return self.text_schema()

    def rejected(self, rule: str) -> RequestRejected:
        return RequestRejected(f"'{self.name}' {rule}", param=self.name)


@dataclass(frozen=True, kw_only=True)
class Text(Field):
    """Required text: the program, the prompt, the rubric."""

    allow_empty: bool = False
    max_chars: int | None = None
    schema: dict[str, Any] = field(default_factory=dict)  # what the schema says beyond the above

    def check_length(self, value: str) -> None:
        if self.max_chars is not None and len(value) > self.max_chars:
            raise self.rejected(f"is too long: at most {self.max_chars:,} characters are graded.")

    def read(self, fields: Fields) -> str:
        value = fields.get(self.name)
        if value is None:
            raise self.rejected("is required.")
        if not isinstance(value, str):
            raise self.rejected("must be text.")
        if not self.allow_empty and not value.strip():
            raise self.rejected("must not be empty.")
        return value

    def text_schema(self) -> dict[str, Any]:
        limit = {} if self.max_chars is None else {"maxLength": self.max_chars}
        return {"type": "string", **limit, **self.schema, "description": self.description}


@dataclass(frozen=True, kw_only=True)
class NullableText(Field):
    """Text or null, read trimmed (null as blank)."""

    def trimmed(self, fields: Fields) -> str:
        value = fields.get(self.name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.rejected("must be text.")
        return value.strip()

    def json_schema(self) -> dict[str, Any]:
        return {**self.text_schema(), "type": ["string", "null"]}


@dataclass(frozen=True, kw_only=True)
class OptionalText(NullableText):
    """Text or null, read trimmed; blank is absent."""

    def read(self, fields: Fields) -> str:
        return self.trimmed(fields)


@dataclass(frozen=True, kw_only=True)
class ProviderKey(NullableText):
    """A provider key the caller brings: one word of printable ASCII, never echoed back."""

    def read(self, fields: Fields) -> str | None:
        value = self.trimmed(fields)
        if value and not (value.isascii() and value.isprintable() and " " not in value):
            # Never echo the value: it is a secret, sent perhaps by mistake.
            raise self.rejected("must be one word of printable ASCII characters.")
        return value or None

    def text_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": patterns.blank_or("[!-~]+"), "description": self.description}


@dataclass(frozen=True, kw_only=True)
class Examples(Field):
    """Few-shot turns: a JSON array of [example_code, example_answer] pairs, or its JSON text."""

    max_items: int
    max_code_chars: int

    def read(self, fields: Fields) -> tuple[tuple[str, str], ...]:
        return self.parse(fields.get(self.name))

    def parse(self, value: Any) -> tuple[tuple[str, str], ...]:
        if value is None or (isinstance(value, str) and not value.strip()):
            return ()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                raise self.rejected("is not valid JSON; send an array of [code, answer] pairs.") from None
        if not isinstance(value, list | tuple):
            raise self.rejected("must be a JSON array of [code, answer] pairs.")
        if len(value) > self.max_items:
            raise self.rejected(f"has {len(value):,} items; at most {self.max_items}.")
        pairs = []
        for index, pair in enumerate(value):
            if not (
                isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            ):
                raise self.rejected(f"item {index} must be a pair [example_code, example_answer].")
            if len(pair[0]) > self.max_code_chars:
                raise self.rejected(f"item {index} is too long: at most {self.max_code_chars:,} characters.")
            pairs.append((pair[0], pair[1]))
        return tuple(pairs)

    def array_schema(self) -> dict[str, Any]:
        code = {"type": "string", "maxLength": self.max_code_chars}
        pair = {"type": "array", "prefixItems": [code, {"type": "string"}], "minItems": 2, "maxItems": 2}
        return {"type": "array", "maxItems": self.max_items, "items": pair}

    def text_schema(self) -> dict[str, Any]:
        return {
            "type": "string",
            "format": "examples-json",
            "contentMediaType": "application/json",
            "contentSchema": self.array_schema(),
            "description": self.description,
        }

    def json_schema(self) -> dict[str, Any]:
        return {"oneOf": [{**self.array_schema(), "type": ["array", "null"]}, self.text_schema()]}


@dataclass(frozen=True, kw_only=True)
class Option(Field, Generic[T]):
    """A field with a default: null, absent or blank text is the default."""

    default: T

    def read(self, fields: Fields) -> T:
        value = fields.get(self.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return self.default
        return self.convert(value)

    def convert(self, value: Any) -> T:
        raise NotImplementedError

    def pattern(self) -> str:
        raise NotImplementedError

    def text_schema(self) -> dict[str, Any]:
        return {
            "type": "string",
            "pattern": self.pattern(),
            "description": self.description,
            "default": self.default_text(),
        }

    def default_text(self) -> str:
        return str(self.default)

    def json_schema(self) -> dict[str, Any]:
        return {"oneOf": [self.text_schema(), self.json_values()], "description": self.description}

    def json_values(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Flag(Option[bool]):
    true: tuple[str, ...] = ("1", "true", "yes", "on")
    false: tuple[str, ...] = ("0", "false", "no", "off")

    def convert(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)  # 1.0 too: the schema's enum [0, 1] takes it, as JSON Schema compares numbers
        text = str(value).strip().lower()
        if text in self.true or text in self.false:
            return text in self.true
        raise self.rejected(
            f"must be {self.true[0]} or {self.false[0]} (or {self.true[1]} or {self.false[1]})."
        )

    def pattern(self) -> str:
        words = tuple(word for pair in zip(self.true, self.false, strict=True) for word in pair)
        return patterns.blank_or(patterns.one_of_words(words))

    def default_text(self) -> str:
        return self.true[0] if self.default else self.false[0]

    def json_schema(self) -> dict[str, Any]:
        values = [self.text_schema(), {"type": ["boolean", "null"]}, {"enum": [0, 1]}]
        return {"oneOf": values, "description": self.description}


@dataclass(frozen=True, kw_only=True)
class WholeNumber(Option[int]):
    low: int
    high: int

    def convert(self, value: Any) -> int:
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and _is_number_text(value.strip(), _WHOLE):
            number = int(value.strip())  # plain ASCII digits only: not `1_0`, not other scripts' digits
        if number is None or not self.low <= number <= self.high:
            raise self.rejected(f"must be a whole number from {self.low} to {self.high}.")
        return number

    def pattern(self) -> str:
        return patterns.blank_or(patterns.whole_number(self.low, self.high))

    def json_values(self) -> dict[str, Any]:
        return {"type": ["integer", "null"], "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True, kw_only=True)
class Number(Option[float]):
    """A number from 0 to a whole number."""

    high: float
    low: ClassVar[int] = 0

    def convert(self, value: Any) -> float:
        number: float | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:
                number = None
        elif isinstance(value, str) and _is_number_text(value.strip(), _NUMBER):
            number = float(value.strip())
        if number is None or not math.isfinite(number) or not self.low <= number <= self.high:
            raise self.rejected(f"must be a number from {self.low:g} to {self.high:g}.")
        return number

    def pattern(self) -> str:
        return patterns.blank_or(patterns.number_from_zero(int(self.high)))

    def default_text(self) -> str:
        return f"{self.default:g}"

    def json_values(self) -> dict[str, Any]:
        return {"type": ["number", "null"], "minimum": self.low, "maximum": int(self.high)}


@dataclass(frozen=True, kw_only=True)
class StudentId(Option[str]):
    """Who the program is from: written to log lines, so one short printable line."""

    max_chars: int

    def convert(self, value: Any) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.rejected("must be non-empty text.")
        text = value.strip()
        if len(text) > self.max_chars or not text.isprintable():
            raise self.rejected(f"must be printable text of at most {self.max_chars} characters.")
        return text

    def read(self, fields: Fields) -> str:
        value = fields.get(self.name)
        if isinstance(value, str) and not value.strip():
            raise self.rejected("must be non-empty text.")  # blank is a mistake here, not the default
        return super().read(fields)

    def pattern(self) -> str:
        return patterns.trimmed(patterns.printable_line(self.max_chars))

    def json_schema(self) -> dict[str, Any]:
        return {"oneOf": [self.text_schema(), {"type": ["number", "null"]}]}


@dataclass(frozen=True, kw_only=True)
class Choice(Option[str]):
    choices: tuple[str, ...]

    def convert(self, value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in self.choices:
            return value.strip().lower()
        shown = quoted(value, 40) if isinstance(value, str) else "a " + type(value).__name__
        raise self.rejected(f"must be {' or '.join(self.choices)}, not {shown}.")

    def pattern(self) -> str:
        return patterns.blank_or("|".join(patterns.any_case(choice) for choice in self.choices))

    def json_schema(self) -> dict[str, Any]:
        return {**self.text_schema(), "type": ["string", "null"]}


@dataclass(frozen=True, kw_only=True)
class Ignored(Field):
    """A field of the original service's clients that this proxy accepts and does not act on."""

    description: str = "Accepted from the original service's clients and not acted on (metadata lists it)"

    def read(self, fields: Fields) -> bool:
        """Whether the request carried it."""
        return fields.get(self.name) not in (None, "")

    def text_schema(self) -> dict[str, Any]:
        return {"description": self.description, "type": "string"}

    def json_schema(self) -> dict[str, Any]:
        return {"description": self.description}


def _is_pair(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(p, str) for p in value)


def _is_number_text(text: str, form: re.Pattern[str]) -> bool:
    return len(text) <= MAX_NUMBER_CHARS and form.fullmatch(text) is not None


# --- the fields, in the order the OpenAPI document lists them -----------------------------------

CODE = Text(
    name="code",
    allow_empty=True,
    max_chars=MAX_CODE_CHARS,
    description="The student program (JavaScript); may be empty",
)
PROMPT = Text(
    name="prompt",
    schema={"pattern": patterns.NOT_BLANK},
    description="System prompt for the grader; not blank",
)
RUBRIC = Text(
    name="rubric",
    schema={
        "format": "rubric-csv",
        "examples": ["Key Concept,Extensive Evidence,No Evidence\nVariables,Several variables change,None\n"],
    },
    description="CSV with a header row holding a `Key Concept` column (any case, any position), "
    f"then one row per key concept (at most {MAX_RUBRIC_ROWS}, none twice); a quoted cell must end",
)
EXAMPLES = Examples(
    name="examples",
    max_items=MAX_EXAMPLES,
    max_code_chars=MAX_CODE_CHARS,
    description="JSON text of the examples (below); blank for none",
)
MODEL = OptionalText(name="model", description="Upstream model (default: AIPROXY_ASSESSMENT_MODEL)")
API_KEY = ProviderKey(
    name="api-key",
    description="Provider key to use instead of the configured one: one word of printable ASCII",
)
REMOVE_COMMENTS = Flag(
    name="remove-comments",
    default=False,
    description="1, true, yes, on (or 0, false, no, off, blank); any case",
)
NUM_RESPONSES = WholeNumber(
    name="num-responses",
    default=1,
    low=1,
    high=MAX_RESPONSES,
    description=f"Answers that vote: a whole number from 1 to {MAX_RESPONSES} in ASCII digits",
)
TEMPERATURE = Number(
    name="temperature",
    default=0.2,
    high=MAX_TEMPERATURE,
    description=f"A number from 0 to {MAX_TEMPERATURE:g}",
)
STUDENT_ID = StudentId(
    name="student-id",
    default="student",
    max_chars=MAX_STUDENT_ID,
    description=f"Who the program is from: printable text of at most {MAX_STUDENT_ID} characters "
    "once trimmed, not blank",
)
RESPONSE_TYPE = Choice(
    name="response-type",
    default="tsv",
    choices=RESPONSE_TYPES,
    description=f"The table the model is asked for: {' or '.join(RESPONSE_TYPES)}",
)
# docs/assessment.md says why these are accepted; the answer's metadata lists those a request carried.
IGNORED = (Ignored(name="code-feature-extractor"), Ignored(name="lesson"))

GRADED = (CODE, PROMPT, RUBRIC)
OPTIONS = (MODEL, API_KEY, REMOVE_COMMENTS, NUM_RESPONSES, TEMPERATURE, STUDENT_ID, RESPONSE_TYPE, *IGNORED)
FIELDS = (*GRADED, EXAMPLES, *OPTIONS)
