"""Every run option, declared once: the ``cxr run`` flags, the DAG's Params form and ``RunConfig`` come from here.

Standard library only (plus :mod:`pipeline.errors`, which is too): the DAG file imports this module at parse
time, in the dag-processor, where pandas, pyarrow and boto3 have no business.

To add a run option: add an :class:`Option` to :data:`OPTIONS` and a field of the same name (or ``field``) to
:class:`pipeline.config.RunConfig` with ``= _DEFAULTS["<field>"]``; the ``cxr run`` flag, the form field, the
defaults of ``config_from_params`` and the range check follow, and ``tests/unit/test_options.py`` checks that
they agree. Only ``store_conn_id`` (an Airflow connection) is the DAG's alone (``airflow_only``).

The release version's syntax lives here too (:data:`VERSION_RE` for a run, :data:`VERSION_FORM_PATTERN` for the
form, both made from the same parts), and so do the split modes (:data:`SPLIT_MODES`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pipeline.errors import UsageError

SplitMode = Literal["auto", "official", "patient-hash"]
SPLIT_MODES: tuple[str, ...] = get_args(SplitMode)
#: A release version: ASCII letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit.
#: Always applied with ``fullmatch`` (``$`` alone would accept a trailing newline).
VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}", re.ASCII)
#: Names a version cannot take because the store's layout uses them: ``releases/latest.json`` and the
#: ``latest`` alias of every command; any ``*.json`` would share a name with a file beside the versions.
RESERVED_VERSIONS = frozenset({"latest"})
RESERVED_VERSION_SUFFIX = ".json"
_END = r"(?![\s\S])"  # the end of the text in Python and JavaScript alike (``$`` accepts a trailing newline)


def _any_case(text: str) -> str:
    """``latest`` -> ``[Ll][Aa]...``: JavaScript, where the form checks patterns, has no inline ``(?i)``."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in text)


#: :func:`pipeline.config.check_version` as a JSON-schema pattern, so the trigger form refuses what a run would:
#: the whole name, and not a reserved name or ``*.json`` in any case.
VERSION_FORM_PATTERN = (
    "^"
    + "".join(f"(?!{_any_case(name)}{_END})" for name in sorted(RESERVED_VERSIONS))
    + rf"(?![\s\S]*{_any_case(RESERVED_VERSION_SUFFIX)}{_END})"
    + VERSION_RE.pattern
    + _END
)


@dataclass(frozen=True)
class Option:
    """One run option: its name (the param key; ``--name-with-dashes`` on the command line) and its rules.

    Attributes:
        name: The DAG param key and ``config_from_params`` key.
        kind: ``str``, ``int``, ``float``, ``bool`` or ``list`` (of strings).
        default: The value when none is given (None: not set, or taken from ``env``).
        title: The form field's title.
        help: One sentence for ``cxr run --help`` and the form.
        minimum, maximum: The range of a number (inclusive; ``maximum`` excluded when ``below_maximum``).
        off: A number outside the range that turns the feature off (``RunConfig`` holds None for it).
        choices: The values a string may take.
        pattern: A JSON-schema pattern the form checks (the run checks the same thing in ``pipeline.config``).
        env: The environment variable an empty value falls back to.
        field: The ``RunConfig`` field it sets (default: ``name``; empty: none, it picks where settings come from).
        scale: ``RunConfig`` holds the value times this (MB -> bytes).
        unit: The unit of the value, for messages and help.
        airflow_only: Only the DAG has it (an Airflow connection id): no ``cxr run`` flag, no ``RunConfig`` field.
        required_on_cli: ``cxr run`` needs the flag (the DAG falls back to ``env``).
    """

    name: str
    kind: type[Any]
    default: Any
    title: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    below_maximum: bool = False
    off: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    env: str | None = None
    field: str | None = None
    scale: int = 1
    unit: str = ""
    airflow_only: bool = False
    required_on_cli: bool = False

    @property
    def flag(self) -> str:
        """The ``cxr run`` flag: ``--shard-size-mb``."""
        return "--" + self.name.replace("_", "-")

    @property
    def config_field(self) -> str:
        """The ``RunConfig`` field this option sets ("" when none)."""
        return "" if self.airflow_only else (self.field if self.field is not None else self.name)

    def range_text(self) -> str:
        """``16..1024 px, or 0 for none``; "" when the option has no range or choices."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.minimum is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        if self.maximum is None:
            text = f"{_num(self.minimum)}{unit} or more"
        else:
            top = f" to under {_num(self.maximum)}" if self.below_maximum else f"..{_num(self.maximum)}"
            text = f"{_num(self.minimum)}{top}{unit}"
        return text + (f", or {self.off} for none" if self.off is not None else "")

    def to_field(self, value: Any) -> Any:
        """A given value (the form's, the command line's or a JSON conf's) as ``RunConfig`` holds it.

        Raises:
            UsageError: The value is not of the option's kind.
        """
        if value is None:
            return None
        if self.kind is list:
            items = [value] if isinstance(value, str) else value
            return tuple(str(item) for item in items) or None
        if self.kind is bool:
            return _boolean(self, value)
        if self.kind is str:
            return str(value)
        number = _number(self, value)
        if self.off is not None and number == self.off:
            return None
        return number * self.scale

    def check_field(self, held: Any) -> None:
        """Refuse a ``RunConfig`` value outside the option's range or choices, naming the option and what to do."""
        if held is None:
            return
        if self.choices and held not in self.choices:
            raise UsageError(f"{self._where()} {held!r} is not {self.range_text()}: choose one of them")
        if self.minimum is None:
            return
        value = held / self.scale if self.scale != 1 else held
        low = value < self.minimum
        high = self.maximum is not None and (value >= self.maximum if self.below_maximum else value > self.maximum)
        if low or high:
            raise UsageError(f"{self._where()} {_num(value)} must lie in {self.range_text()}: give a value there")

    def _where(self) -> str:
        return f"{self.title} ({self.flag}, param {self.name!r})"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _number(option: Option, value: Any) -> Any:
    if isinstance(value, bool):
        raise UsageError(f"{option._where()} takes a number, not {value!r}")
    try:
        return option.kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option._where()} takes a number, not {value!r}") from None


def _boolean(option: Option, value: Any) -> bool:
    if isinstance(value, bool | int):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise UsageError(f"{option._where()} takes true or false, not {value!r}")


#: Every run option, in the order the form and ``cxr run --help`` show them.
OPTIONS: tuple[Option, ...] = (
    Option("source", str, None, "Source",
           "where the NIH archives and CSVs are: a directory, s3://BUCKET/PREFIX or http(s)://URL",
           env="CXR_SOURCE", required_on_cli=True),
    Option("store", str, None, "Store",
           "where releases go: s3://BUCKET[/PREFIX] (endpoint and keys from the store connection or AWS_* variables)",
           pattern="^s3://[^/]+", env="CXR_STORE", required_on_cli=True),
    Option("release", str, None, "Release version",
           "publish under this version (default: the run's date, YYYY.MM.DD; .2, .3... for another release that day)",
           pattern=VERSION_FORM_PATTERN),
    Option("split_mode", str, "auto", "Split mode",
           "official: the NIH test list; patient-hash: a hash of the patient id; auto: official if the lists exist",
           choices=SPLIT_MODES),
    Option("seed", int, 0, "Split seed", "seed of the patient hash", minimum=0),
    Option("val_fraction", float, 0.1, "Validation share",
           "share of patients in val (in official mode: of the train_val list's patients)",
           minimum=0, maximum=1, below_maximum=True),
    Option("test_fraction", float, 0.2, "Test share", "share of patients in test (patient-hash mode only)",
           minimum=0, maximum=1, below_maximum=True),
    Option("shards", list, None, "Archives",
           "only these archives: names (images_001.zip) or numbers (1); default: all"),
    Option("data_entry", str, None, "Metadata file",
           "the metadata file when several are present: 2017, v2020 (default) or a file name"),
    Option("checksums", str, None, "Checksum list",
           "md5 list to verify against: a path, URI or file name in the source (default: the one in the source)"),
    Option("annotations", list, None, "Annotation layers",
           "annotation layers published beside the primary labels, each ID=LOCATION (a file name in the source, a "
           "path or a URI; the same ID twice joins two files into one layer)"),
    Option("variant_size", int, 256, "Variant size", "long side of the downsized PNG copy",
           minimum=16, maximum=1024, off=0, unit="px"),
    Option("shard_size_mb", int, 1024, "Shard size (MB)",
           "target size of each WebDataset tar shard, and of each conversion task's share of a split",
           minimum=1, maximum=65536, unit="MB", field="shard_target_bytes", scale=1 << 20),
    Option("min_shards", int, 8, "Minimum shards",
           "WebDataset shards (and conversion tasks) per split at least, so that every reader worker gets data; a "
           "split with fewer images gets one per image",
           minimum=1, maximum=4096),
    Option("dry_run", bool, False, "Dry run",
           "plan only: report the version that would be published; claim and publish nothing"),
    Option("force", bool, False, "Force", "rebuild even when the inputs are unchanged"),
    Option("review", bool, False, "Review before publish",
           "stage the release and publish it only once a person approves it (reject or no answer: nothing is "
           "published)"),
    Option("store_conn_id", str, None, "Store connection",
           "Airflow connection (AWS type) with the store's endpoint and keys (default: $CXR_STORE_CONN_ID, cxr_store)",
           airflow_only=True),
)  # fmt: skip
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
#: What ``config_from_params`` assumes for a key it is not given.
PARAM_DEFAULTS: dict[str, Any] = {option.name: option.default for option in OPTIONS}


def option(name: str) -> Option:
    """The option called ``name``."""
    return BY_NAME[name]


def default_of(name: str) -> Any:
    """The ``RunConfig`` default of an option: its default as the config holds it (``shard_size_mb`` in bytes)."""
    return BY_NAME[name].to_field(BY_NAME[name].default)


def config_defaults() -> dict[str, Any]:
    """``RunConfig`` field -> its default (:func:`default_of` for every option that sets a field)."""
    return {o.config_field: o.to_field(o.default) for o in config_options()}


def cli_options() -> tuple[Option, ...]:
    """The options ``cxr run`` has a flag for."""
    return tuple(o for o in OPTIONS if not o.airflow_only)


def config_options() -> tuple[Option, ...]:
    """The options that set a ``RunConfig`` field."""
    return tuple(o for o in OPTIONS if o.config_field)


def cli_help(option: Option) -> str:
    """``--help`` text: the sentence, the range and the default."""
    extra = [option.range_text()] if option.range_text() and not option.choices else []
    if option.kind is not bool and option.default is not None:
        extra.append(f"default {option.default}")
    return option.help + (f" ({'; '.join(extra)})" if extra else "")


def form_schema(option: Option) -> dict[str, Any]:
    """The JSON-schema keywords of the option's DAG ``Param`` (``title``, ``type``, range, choices, pattern)."""
    json_type = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array"}[option.kind]
    schema: dict[str, Any] = {
        "title": option.title,
        "type": ["null", json_type] if option.default is None else json_type,
    }
    if option.kind is list:
        schema["items"] = {"type": "string"}
    if option.choices:
        schema["enum"] = list(option.choices)
    if option.pattern:
        schema["pattern"] = option.pattern
    if option.minimum is not None:
        schema["minimum"] = option.off if option.off is not None and option.off < option.minimum else option.minimum
        if option.off is not None:  # the off value, or the range: nothing between them
            schema["not"] = {"exclusiveMinimum": option.off, "exclusiveMaximum": option.minimum}
    if option.maximum is not None:
        schema["exclusiveMaximum" if option.below_maximum else "maximum"] = option.maximum
    return schema


def form_description(option: Option) -> str:
    """The form field's description: the sentence, the range and where an empty value comes from."""
    text = option.help[:1].upper() + option.help[1:]
    if option.range_text() and not option.choices:
        text += f" ({option.range_text()})"
    return text + (f" (empty: ${option.env})" if option.env else "")


#: Hours a run's leftover workspace must be idle before the release DAG's clean-up removes it (unset or 0: the
#: DAG has no clean-up task). Read when the DAG file is parsed, like the deadline.
CLEAN_IDLE_HOURS_ENV = "CXR_CLEAN_IDLE_HOURS"


def clean_idle_hours(environ: Mapping[str, str] = os.environ) -> float | None:
    """``$CXR_CLEAN_IDLE_HOURS`` as hours above 0, or None when unset or 0 (no clean-up task).

    Raises:
        UsageError: the value is not a number of hours, 0 or more.
    """
    text = environ.get(CLEAN_IDLE_HOURS_ENV, "").strip()
    try:
        hours = float(text) if text else 0.0
    except ValueError:
        hours = -1.0
    if not 0 <= hours < float("inf"):
        raise UsageError(
            f"{CLEAN_IDLE_HOURS_ENV}={text!r} must be a number of hours (e.g. 48; 0 or unset: no clean-up task): "
            "fix it in the dag-processor's environment"
        )
    return hours or None
