"""The scenario schema shared by `voicebot chat --script` and `voicebot call --script`.

A scenario is a caller's script: who calls (``caller``, ``called``), a list of turns, each one
thing the caller does (``say``, ``dtmf``, ``silence``, ``hangup``), and what must happen
(``expect``). The text simulator (``voicebot.simulator``) and the phone emulator
(``voicebot.emulator.scenario``) each extend these models with what only they understand: the
simulator a recognition confidence and failures on our side, the emulator audio files, voices and
timing. What they share is written here once.

Scenario files are written by hand, so a mistake is reported as one sentence about the file, the
scenario and the turn, never as pydantic's own wording: each field's ``description`` is that
sentence, and ``first_problem`` turns a ``ValidationError`` into it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from voicebot.errors import ScenarioError

DTMF_KEYS = "0123456789*#"
Seconds = Annotated[float, Field(ge=0)]


def problem(message: str) -> PydanticCustomError:
    """A validation error whose message is ``message`` as written (no pydantic prefix)."""
    return PydanticCustomError("scenario", message)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def text_value(key: str, example: str) -> Any:
    """A ``mode="before"`` check for a text field: YAML numbers become text, anything else is refused."""

    def check(cls: type, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if is_number(value):
            return str(value)
        raise problem(f"'{key}' is text, e.g. {key}: {example}")

    return field_validator(key, mode="before")(classmethod(check))


def quoted_numbers(*keys: str) -> Any:
    """A ``mode="before"`` check for phone numbers: YAML reads an unquoted ``+31...`` as a number."""

    def check(cls: type, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            key = info.field_name
            raise problem(f'quote the number in \'{key}\', e.g. {key}: "+31612345678"')
        return value

    return field_validator(*keys, mode="before")(classmethod(check))


class Spec(BaseModel):
    """A part of a scenario: strict types (a YAML ``true`` is no number), unknown keys refused.

    ``UNKNOWN`` and ``NOT_A_MAPPING`` are the sentences for a wrong key and for a value that is no
    mapping; ``before_keys`` and ``after_keys`` let a subclass check the raw mapping's shape.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    UNKNOWN: ClassVar[str] = "unknown keys {unknown}; use {known}"
    NOT_A_MAPPING: ClassVar[str] = "expected a mapping"

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            return data
        data = cls.before_keys(data)
        if not isinstance(data, dict):
            raise problem(cls.NOT_A_MAPPING.format(known=sorted(cls.model_fields)))
        unknown = set(data) - set(cls.model_fields)
        if unknown:
            raise problem(cls.UNKNOWN.format(unknown=sorted(unknown), known=sorted(cls.model_fields)))
        cls.after_keys(data)
        return data

    @classmethod
    def before_keys(cls, data: Any) -> Any:
        """A subclass's first look at the raw data (its shape), before unknown keys are refused."""
        return data

    @classmethod
    def after_keys(cls, data: dict[str, Any]) -> None:
        """A subclass's check of the raw mapping once its keys are known (how many actions, say)."""

    def given(self) -> dict[str, Any]:
        """The fields the file stated, as plain data (what the runners read)."""
        return self.model_dump(exclude_unset=True)


class Expectations(Spec):
    """What must have happened; both runners check these three, each in its own terms."""

    UNKNOWN: ClassVar[str] = "unknown expectations {unknown}; use {known}"
    NOT_A_MAPPING: ClassVar[str] = "'expect' is a mapping of {known}"

    transfer: bool | str | None = Field(None, description="true, false or a kind such as number")
    hangup: bool | None = Field(None, description="true or false")
    prompt_contains: str | list[str] | None = Field(None, description="text or a list of texts")


class Turn(Spec):
    """One thing the caller does. ``INPUTS`` are the keys that are an action; a runner says how many a turn needs."""

    INPUTS: ClassVar[tuple[str, ...]] = ("say", "dtmf", "silence", "hangup")
    NOT_A_MAPPING: ClassVar[str] = "a turn is a mapping, e.g. {{say: ja}}"

    hangup: bool | None = Field(None, description="write 'hangup: true'")
    silence: Literal[True] | Seconds | None = Field(None, description="'silence' is true or a number of seconds")
    dtmf: str | None = None
    say: str | None = None

    _say_text = text_value("say", "ja")

    @field_validator("hangup", mode="before")
    @classmethod
    def _hangup_is_true(cls, value: Any) -> Any:
        if value is not True:
            raise problem("write 'hangup: true'")
        return value

    @field_validator("dtmf", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> str:
        keys = str(value)
        if not keys or isinstance(value, bool) or any(k not in DTMF_KEYS for k in keys):
            raise problem(f"dtmf {keys!r}: use the keys 0-9 * # (quote them in YAML)")
        return keys

    @classmethod
    def inputs(cls, data: dict[str, Any]) -> list[str]:
        """The action keys a turn states, in ``INPUTS`` order."""
        return [k for k in cls.INPUTS if k in data]


class Scenario(Spec):
    """One call: who calls whom and the caller's turns."""

    name: str | None = None
    caller: str | None = None
    called: str | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _name_text(cls, value: Any) -> Any:
        return str(value) if is_number(value) else value

    _numbers = quoted_numbers("caller", "called")


# -- reading a file and reporting the first problem --------------------------------------------------


def read_yaml(path: Path, what: str) -> Any:
    """The file as YAML 1.2 (``say: yes`` stays text), or a ScenarioError naming it."""
    from voicebot.flow.yamlsrc import load_yaml

    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: cannot read {what}: not UTF-8 text") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read {what}: {exc}") from None


def _inner_model(annotation: Any) -> type[Spec] | None:
    """The Spec inside ``list[Turn]``, ``Expect | None`` and the like, if any."""
    if isinstance(annotation, type) and issubclass(annotation, Spec):
        return annotation
    if get_origin(annotation) in (list, Union) or type(annotation).__name__ == "UnionType":
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found:
                return found
    return None


def first_problem(exc: ValidationError, model: type[Spec]) -> tuple[tuple[str | int, ...], str]:
    """Where (field names and list positions) and what, for the first error of ``exc``.

    Our own checks give their sentence; a type or range error gives the field's ``description``.
    In an ``expect`` block the sentence says what the value must be and what it was.
    """
    error = exc.errors()[0]
    where: list[str | int] = []
    spec: type[Spec] | None = model
    field = None
    for part in error["loc"]:
        if isinstance(part, int):
            where.append(part)
        elif spec is not None and part in spec.model_fields:
            field = spec.model_fields[part]
            where.append(part)
            owner, spec = spec, _inner_model(field.annotation)
        else:
            break  # a union member's name: the field itself is what is wrong
    if error["type"] == "scenario" or field is None or not field.description:
        return tuple(where), error["msg"]
    if issubclass(owner, Expectations):
        return tuple(where), f"expect.{where[-1]} must be {field.description}, not {error['input']!r}"
    return tuple(where), field.description
