"""`voicebot review export`: operators' verdicts from /ops/review written into the flow file.

The sentences marked as examples of an intent go under ``intents.<name>.examples``, those marked
out of scope under ``out_of_scope``; noise never leaves the database. Without ``--write`` the
change is printed as a unified diff (to read, or to apply with ``patch -p1``); with it the file is
replaced in one step (nothing half-written: a temporary file renamed over it, its mode kept) and
the verdicts are marked exported, so the next export does not offer them again. Everything else in
the file stays as it was, byte for byte; the changed file must load as a flow, or nothing is written.
"""

from __future__ import annotations

import difflib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from voicebot.commands.context import flow_path, settings_from

if TYPE_CHECKING:
    import sqlalchemy as sa

    from voicebot.config import Settings
    from voicebot.flow import Flow
    from voicebot.flow.additions import Additions
    from voicebot.records.review import Verdict


@dataclass
class Pending:
    """A flow file, its verdicts waiting for export, and the file's text with them added."""

    path: Path
    text: str
    flow: "Flow"
    verdicts: list["Verdict"]
    additions: "Additions"
    patched: "Flow | None"       # the flow loaded from the new text (None when nothing is added)

    def exported(self) -> list[int]:
        """The verdicts the new text holds (added now, or there already): the ones to mark exported."""
        from voicebot.flow.additions import same

        inside = {(where, same(sentence)) for where, sentence in [*self.additions.added, *self.additions.present]}
        return [v.id for v in self.verdicts if (_where(v), same(" ".join(v.text.split()))) in inside]


def _where(verdict: "Verdict") -> str:
    return verdict.intent if verdict.label == "intent" and verdict.intent else "out_of_scope"


def records_engine(settings: "Settings") -> "sa.Engine":
    """The call records database, opened without creating or migrating it; one clear line when it is not there."""
    from voicebot.records.db import RecordsUnavailable, open_reader

    try:
        return open_reader(settings.records.url)
    except RecordsUnavailable as exc:
        raise click.ClickException(str(exc)) from None


def read_flow(ctx: click.Context, path: Path, text: str) -> "Flow":
    """The flow in ``text``; its problems printed one a line and exit 1 when it is not valid."""
    from voicebot.errors import FlowError
    from voicebot.flow import parse_flow

    try:
        return parse_flow(text, str(path), settings_from(ctx).transfer_words)
    except FlowError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)


def pending(ctx: click.Context, flow_name: str | None, engine: "sa.Engine | None") -> Pending:
    """The flow file named by ``--flow`` (an id or a file) and its waiting verdicts, added to its text.

    ``engine`` None: no records to read (the text stays as it is)."""
    import sqlalchemy as sa

    from voicebot.errors import FlowError
    from voicebot.flow import parse_flow
    from voicebot.flow.additions import AdditionError, add_examples
    from voicebot.records.review import pending_examples

    path = Path(flow_path(ctx, flow_name))
    try:
        text = path.read_bytes().decode("utf-8")        # bytes: line endings exactly as they are
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    flow = read_flow(ctx, path, text)
    verdicts: list[Any] = []
    if engine is not None:
        try:
            verdicts = pending_examples(engine, flow.id)
        except sa.exc.SQLAlchemyError as exc:
            raise click.ClickException(f"the call records cannot be read: {type(exc).__name__}") from None
    try:
        additions = add_examples(text, [(_where(v), v.text) for v in verdicts])
    except AdditionError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    patched = None
    if additions.added:
        try:
            patched = parse_flow(additions.text, str(path), settings_from(ctx).transfer_words)
        except FlowError as exc:
            problems = "\n".join(f"  {p}" for p in exc.problems)
            raise click.ClickException(f"{path} would not load with the new examples:\n{problems}") from None
    return Pending(path, text, flow, verdicts, additions, patched)


def _replace(path: Path, before: str, after: str) -> None:
    """Write ``after`` over ``path`` in one rename, if the file still holds ``before``."""
    if path.read_bytes().decode("utf-8") != before:
        raise click.ClickException(f"{path} changed while the export ran: run it again")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.export")
    try:
        temporary.write_bytes(after.encode("utf-8"))
        os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _shown(path: Path) -> str:
    """The file as the diff names it: relative to here when it is below here (``patch -p1`` applies it)."""
    relative = os.path.relpath(path.resolve(), Path.cwd())
    return path.resolve().as_posix().lstrip("/") if relative.startswith("..") else Path(relative).as_posix()


@click.group("review")
def review() -> None:
    """Sentences the assistant did not understand, as operators marked them on /ops/review."""


@review.command("export")
@click.option("--flow", "flow_name", required=True, help="The flow: its id (e.g. energie) or its file.")
@click.option("--write", is_flag=True, help="Change the flow file and mark the examples exported.")
@click.pass_context
def export_command(ctx: click.Context, flow_name: str, write: bool) -> None:
    """Print the reviewed examples of a flow, not exported yet, as a diff of its file (--write: apply it)."""
    from voicebot.records.review import mark_exported

    engine = records_engine(settings_from(ctx))
    found = pending(ctx, flow_name, engine)
    additions = found.additions
    if not found.verdicts:
        click.echo(f"No reviewed examples of {found.flow.id} wait for export.", err=True)
        return
    if additions.added:
        relative = _shown(found.path)
        click.echo("".join(difflib.unified_diff(found.text.splitlines(keepends=True),
                                                additions.text.splitlines(keepends=True),
                                                fromfile=f"a/{relative}", tofile=f"b/{relative}")), nl=False)
    intents = sum(1 for where, _ in additions.added if where != "out_of_scope")
    click.echo(f"{len(additions.added)} sentence(s) to add to {found.path}: {intents} intent example(s), "
               f"{len(additions.added) - intents} out of scope.", err=True)
    if additions.present:
        click.echo(f"{len(additions.present)} already in the file.", err=True)
    for where, sentence, why in additions.skipped:
        click.echo(f"left out ({where}): {sentence!r}: {why}; change its verdict on /ops/review", err=True)
    if not write:
        if additions.added:
            click.echo("Nothing written: --write changes the file.", err=True)
        return
    if additions.added:
        _replace(found.path, found.text, additions.text)
    marked = mark_exported(engine, found.exported())
    click.echo(f"Wrote {found.path} ({found.patched.version if found.patched else found.flow.version}); "
               f"{marked} verdict(s) marked exported. Running servers pick up the changed flow when they "
               "reload it.", err=True)
