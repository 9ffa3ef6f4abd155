"""`voicebot customers`: the CSV import (all or nothing), show with secrets masked, set-pin without echo."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from voicebot.cli import main
from voicebot.identity.directory import SqliteDirectory

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "flows" / "customers-demo.csv"
HEADER = "customer_number,name,phones,postcode,house_number,birth_date,pin\n"


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("identity:\n  database: data/customers.sqlite3\n")
    return path


def database(config: Path) -> Path:
    return config.parent / "data" / "customers.sqlite3"


def run(config: Path, *args: str, input: str | None = None):
    return CliRunner().invoke(main, ["--config", str(config), "customers", *args], input=input)


def test_the_demo_set_imports_and_again_only_with_update(config):
    first = run(config, "import", str(DEMO))
    assert first.exit_code == 0, first.output
    assert f"{DEMO}: 6 added, 0 updated; 6 customers in {database(config)}" in first.stdout
    assert "holds 1 PIN(s) in plain text" in first.stderr and "delete the file" in first.stderr

    again = run(config, "import", str(DEMO))
    assert again.exit_code == 1
    lines = again.stderr.splitlines()
    assert lines[:6] == [f"{DEMO}:{line}: customer {number} already exists; use --update to change existing customers"
                         for line, number in zip(range(2, 8), range(100001, 100007))]
    assert "6 problem(s)" in again.stderr and "nothing imported" in again.stderr

    update = run(config, "import", str(DEMO), "--update")
    assert update.exit_code == 0 and "0 added, 6 updated; 6 customers" in update.stdout
    quiet = run(config, "import", str(DEMO), "--update", "--quiet")
    assert quiet.exit_code == 0 and quiet.output == ""
    assert run(config, "count").stdout.strip() == "6"
    with SqliteDirectory(database(config)) as directory:
        assert directory.pin_matches("100002", "4321")
        assert [c.number for c in directory.by_address("9711EF", "3")] == ["100003", "100004"]
        assert [c.number for c in directory.by_phone("+31612345678")] == ["100001"]


def test_every_bad_row_is_reported_and_nothing_is_imported(config, tmp_path):
    bad = tmp_path / "klanten.csv"
    bad.write_text(HEADER +
                   "200001,Goede Klant,+31612345678,1234AB,1,1980-01-01,\n"        # 2: fine
                   "200002,Slecht Nummer,0612,1234AB,2,1980-01-01,\n"               # 3
                   "200003,Slechte Postcode,+31612345679,12345,3,1980-01-01,\n"      # 4
                   "200004,Toekomst,+31612345670,1234AB,4,2999-01-01,\n"             # 5
                   "200005,Fout Formaat,+31612345671,1234AB,5,01-02-1980,\n"         # 6
                   "200001,Dubbel,+31612345672,1234AB,6,1980-01-01,\n"               # 7
                   "200007,Korte Pin,+31612345673,1234AB,7,1980-01-01,12\n"          # 8
                   "200008,Te weinig\n"                                              # 9
                   "\n"                                                              # 10: blank, fine
                   ",Geen Nummer,;,1234AB,9,1980-01-01,\n",                          # 11
                   encoding="utf-8")
    result = run(config, "import", str(bad))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{bad}:3: '0612' is not a valid phone number",
        f"{bad}:4: postcode must be four digits and two letters, like 1234 AB",
        f"{bad}:5: birth date lies in the future",
        f"{bad}:6: birth date must be a date written YYYY-MM-DD",
        f"{bad}:7: customer number 200001 appears twice (first on line 2)",
        f"{bad}:8: PIN must be 4 to 8 digits",
        f"{bad}:9: has 2 fields, the header 7",
        f"{bad}:11: customer number is empty",
        f"{bad}:11: no phone number (write one or more, separated by ;)",
        f"Error: 9 problem(s) in {bad}; nothing imported",
    ]
    assert "01-02-1980" not in result.output                      # a birth date is never repeated
    assert run(config, "count").stdout.strip() == "0"


def test_one_bad_row_keeps_out_the_good_ones_and_existing_data_unchanged(config, tmp_path):
    assert run(config, "import", str(DEMO)).exit_code == 0
    changes = tmp_path / "changes.csv"
    changes.write_text(HEADER + "100001,Jan de Vries-Smit,+31612345678,1012AB,12,1975-03-14,\n"
                                "100007,Nieuw Klant,+31611111111,1012AB,14,1980-13-01,\n")
    result = run(config, "import", str(changes), "--update")
    assert result.exit_code == 1 and f"{changes}:3: birth date must be" in result.stderr
    show = run(config, "show", "100001")
    assert "Jan de Vries\n" in show.stdout and run(config, "count").stdout.strip() == "6"


@pytest.mark.parametrize("header, words", [
    ("customer_number,naam,phones,postcode,house_number,birth_date,pin",
     ["header lacks column(s) name", "header has unknown column(s) 'naam'"]),
    ("customer_number,name,phones,postcode,house_number,birth_date,phones",
     ["header names column(s) phones twice"]),
    ("", ["file is empty"]),
])
def test_the_header_is_checked(config, tmp_path, header, words):
    file = tmp_path / "customers.csv"
    file.write_text(header + ("\n" if header else ""))
    result = run(config, "import", str(file))
    assert result.exit_code == 1
    for phrase in words:
        assert f"{file}:1: {phrase}" in result.stderr


def test_columns_in_any_order_a_spreadsheet_bom_and_no_pin_column(config, tmp_path):
    file = tmp_path / "export.csv"
    file.write_bytes("\ufeffname,customer_number,birth_date,house_number,postcode,phones\n"
                     "Anna Smit,300001,,8 b,2511 jk,+31 6 22222222;06-33333333\n".encode("utf-8"))
    result = run(config, "import", str(file))
    assert result.exit_code == 0, result.output
    assert "PIN" not in result.output
    show = run(config, "show", "300001").stdout
    assert "+31622222222, +31633333333" in show and "2511 **  8B" in show and "birth date    not known" in show


def test_a_file_that_cannot_be_read(config, tmp_path):
    result = run(config, "import", str(tmp_path / "missing.csv"))
    assert result.exit_code == 1 and f"{tmp_path / 'missing.csv'}: cannot read" in result.stderr
    latin = tmp_path / "latin.csv"
    latin.write_bytes(HEADER.encode() + "300002,Jos\xe9 Garc\xeda,+31612345678,1234AB,1,1980-01-01,\n".encode("latin-1"))
    result = run(config, "import", str(latin))
    assert result.exit_code == 1 and "not UTF-8 text" in result.stderr


def test_show_masks_every_secret(config):
    run(config, "import", str(DEMO))
    result = run(config, "show", "100002")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "customer      100002",
        "name          Fatima El Amrani",
        "phones        +31623456789, +31201234567",
        "address       3511 **  7A",
        "birth date    **-**-1988",
        "PIN           set",
    ]
    for secret in ("3511CD", "3511 CD", "1988-11-02", "11-02", "4321"):
        assert secret not in result.output
    assert "PIN           not set" in run(config, "show", "100001").stdout
    missing = run(config, "show", "999999")
    assert missing.exit_code == 1 and "no customer 999999" in missing.output


def test_set_pin_from_stdin_for_scripts(config):
    run(config, "import", str(DEMO))
    result = run(config, "set-pin", "100001", "--pin-stdin", input="97531\n")
    assert result.exit_code == 0 and result.output == "PIN set for customer 100001.\n"
    bad = run(config, "set-pin", "100003", "--pin-stdin", input="12\n")
    assert bad.exit_code == 1 and "PIN must be 4 to 8 digits (read from standard input)" in bad.output
    assert "12\n" not in bad.output
    with SqliteDirectory(database(config)) as directory:
        assert directory.pin_matches("100001", "97531")
        assert not directory.by_number("100003").has_pin


def test_set_pin_asks_twice_without_echo(config):
    run(config, "import", str(DEMO))
    result = run(config, "set-pin", "100006", input="2468\n2468\n")
    assert result.exit_code == 0, result.output
    assert "PIN (4 to 8 digits)" in result.output and "Repeat the PIN" in result.output
    assert "2468" not in result.output
    mismatch = run(config, "set-pin", "100006", input="1357\n1358\n")
    assert mismatch.exit_code != 0 and "do not match" in mismatch.output
    assert "1357" not in mismatch.output and "1358" not in mismatch.output
    too_short = run(config, "set-pin", "100006", input="12\n")
    assert too_short.exit_code != 0 and "PIN must be 4 to 8 digits" in too_short.output
    with SqliteDirectory(database(config)) as directory:
        assert directory.pin_matches("100006", "2468")


def test_set_pin_for_an_unknown_customer_asks_nothing(config):
    run(config, "import", str(DEMO))
    result = run(config, "set-pin", "999999", input="2468\n2468\n")
    assert result.exit_code == 1 and "no customer 999999" in result.output and "PIN (" not in result.output


def test_make_run_loads_the_demo_set_and_the_docs_list_it():
    makefile = (REPO / "Makefile").read_text()
    assert "voicebot customers import flows/customers-demo.csv --update" in makefile
    docs = (REPO / "docs" / "identity.md").read_text()
    with DEMO.open(newline="") as file:
        for row in csv.DictReader(file):
            assert f"| {row['customer_number']} " in docs and row["birth_date"] in docs, row["customer_number"]
