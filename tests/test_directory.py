"""The embedded customer directory: a real SQLite file, shared by threads and processes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import sqlite3
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from voicebot.config import IdentitySection
from voicebot.errors import ConfigError
from voicebot.identity import Customer, DirectoryUnavailable, fields
from voicebot.identity.crm import CrmDirectory
from voicebot.identity.directory import SCHEMA_VERSION, CustomerExists, SqliteDirectory, open_directory
from voicebot.identity.pins import hash_pin, verify_pin

REPO = Path(__file__).resolve().parent.parent

JAN = Customer(number="100001", name="Jan de Vries", phones=("06-1234 5678",), postcode="1012 ab",
               house_number="12", birth_date=dt.date(1975, 3, 14))
PIETER = Customer(number="100003", name="Pieter Bakker", phones=("+31634567890",), postcode="9711EF",
                  house_number="3", birth_date=dt.date(1952, 6, 30))
SANNE = Customer(number="100004", name="Sanne Bakker", phones=("+31 6 45678901",), postcode="9711 EF",
                 house_number="3", birth_date=dt.date(1991, 1, 21))


@pytest.fixture
def directory(tmp_path):
    with SqliteDirectory(tmp_path / "customers.sqlite3") as found:
        yield found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the file ---------------------------------------------------------------------------------

def test_created_on_first_use_private_in_wal_mode_with_schema_version(tmp_path):
    path = tmp_path / "data" / "nested" / "customers.sqlite3"
    directory = SqliteDirectory(path)
    assert not path.parent.exists()             # opening costs nothing until it is used
    assert directory.count() == 0
    assert mode(path) == 0o600
    directory.upsert(JAN)
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and mode(wal) == 0o600  # the log holds customers too
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"customers", "phones"} <= tables
    raw.close()
    directory.close()


def test_opening_again_keeps_data_and_version(tmp_path):
    path = tmp_path / "customers.sqlite3"
    with SqliteDirectory(path) as first:
        first.upsert(JAN)
    with SqliteDirectory(path) as second:
        assert second.by_number("100001").name == "Jan de Vries"
        assert second.count() == 1


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "customers.sqlite3"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 7")
    raw.close()
    with pytest.raises(DirectoryUnavailable, match=r"schema version 7, newer than .* \(1\): upgrade voicebot"):
        SqliteDirectory(path).by_number("100001")


def test_a_file_that_is_no_database_is_unavailable_with_its_name(tmp_path):
    path = tmp_path / "customers.sqlite3"
    path.write_bytes(b"this is not a database, it is a spreadsheet export" * 100)
    with pytest.raises(DirectoryUnavailable, match=str(path)):
        SqliteDirectory(path).by_phone("+31612345678")


def test_a_folder_that_cannot_be_made_is_unavailable(tmp_path):
    (tmp_path / "taken").write_text("a file where the folder should be")
    with pytest.raises(DirectoryUnavailable, match="cannot open"):
        SqliteDirectory(tmp_path / "taken" / "customers.sqlite3").count()


def test_a_writer_holding_the_lock_makes_a_write_fail_within_the_busy_timeout(tmp_path):
    path = tmp_path / "customers.sqlite3"
    with SqliteDirectory(path) as setup:
        setup.upsert(JAN)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with SqliteDirectory(path, busy_timeout_ms=50) as directory:
            assert directory.by_number("100001") is not None       # reading never waits for a writer
            with pytest.raises(DirectoryUnavailable, match="locked"):
                directory.set_pin("100001", "1234")
    finally:
        other.execute("ROLLBACK")
        other.close()


# -- lookups ----------------------------------------------------------------------------------

def test_phone_numbers_are_stored_as_e164_and_found_however_written(directory):
    directory.upsert(dataclasses.replace(JAN, phones=("06-1234 5678", "020 123 4567", "+31612345678")))
    jan = directory.by_number("100001")
    assert jan.phones == ("+31612345678", "+31201234567")     # normalised, duplicates dropped, order kept
    assert jan.postcode == "1012AB" and jan.birth_date == dt.date(1975, 3, 14) and not jan.has_pin
    for written in ("+31612345678", "0612345678", "0031 6 12 34 56 78", "+31 (0)6-12345678"):
        assert [c.number for c in directory.by_phone(written)] == ["100001"], written
    assert [c.number for c in directory.by_phone("020-1234567")] == ["100001"]
    assert directory.by_phone("+31687654321") == []
    assert directory.by_phone("not a number") == []


def test_by_number_is_exact_and_tolerates_spaces(directory):
    directory.upsert(JAN)
    assert directory.by_number(" 100 001 ").number == "100001"
    assert directory.by_number("10000") is None
    assert directory.by_number("100001; DROP TABLE customers") is None
    assert directory.count() == 1


def test_by_address_finds_every_customer_at_the_address(directory):
    directory.upsert_many([(JAN, None), (PIETER, None), (SANNE, None)])
    household = directory.by_address("9711 ef", " 3 ")
    assert [c.number for c in household] == ["100003", "100004"]
    assert [c.number for c in directory.by_address("1012AB", "12")] == ["100001"]
    assert directory.by_address("1012AB", "13") == []
    assert directory.by_address("not a postcode", "12") == []


def test_house_number_additions_are_one_written_form(directory):
    directory.upsert(dataclasses.replace(JAN, house_number="44 b"))
    assert [c.number for c in directory.by_address("1012AB", "44B")] == ["100001"]
    assert directory.by_address("1012AB", "44") == []


# -- PINs -------------------------------------------------------------------------------------

def test_pins_are_stored_as_salted_scrypt_hashes_and_verified(directory):
    directory.upsert(JAN, pin="4321")
    directory.upsert(PIETER, pin="4321")
    directory.upsert(SANNE)
    raw = sqlite3.connect(directory.path)
    hashes = dict(raw.execute("SELECT number, pin_hash FROM customers"))
    raw.close()
    assert hashes["100004"] is None
    for stored in (hashes["100001"], hashes["100003"]):
        assert stored.startswith("scrypt$16384$8$1$") and "4321" not in stored
    assert hashes["100001"] != hashes["100003"]                # a salt of its own per customer
    assert directory.by_number("100001").has_pin and not directory.by_number("100004").has_pin
    assert directory.pin_matches("100001", "4321")
    assert not directory.pin_matches("100001", "4322")
    assert not directory.pin_matches("100001", "43210")
    assert not directory.pin_matches("100004", "4321")         # no PIN: never a match
    assert not directory.pin_matches("999999", "4321")         # no such customer
    assert not directory.pin_matches("", "4321")


def test_set_pin_replaces_and_removes_and_an_update_keeps_it(directory):
    directory.upsert(JAN, pin="1111")
    assert directory.set_pin("100001", "22223333")
    assert directory.pin_matches("100001", "22223333") and not directory.pin_matches("100001", "1111")
    directory.upsert(dataclasses.replace(JAN, name="Jan de Vries-Smit"))  # no PIN given: kept
    assert directory.pin_matches("100001", "22223333")
    assert not directory.set_pin("999999", "1234")
    with pytest.raises(ValueError, match="4 to 8 digits"):
        directory.set_pin("100001", "12")
    assert directory.set_pin("100001", None)
    assert not directory.by_number("100001").has_pin


def test_malformed_hashes_never_match():
    good = hash_pin("1234")
    assert verify_pin("1234", good)
    scheme, n, r, p, salt, digest = good.split("$")
    for broken in ("", "1234", f"md5${n}${r}${p}${salt}${digest}", f"scrypt$3$8$1${salt}${digest}",
                   f"scrypt${2**30}${r}${p}${salt}${digest}", f"scrypt${n}${r}${p}$!!${digest}",
                   f"scrypt${n}${r}${p}${salt}$"):
        assert not verify_pin("1234", broken), broken


# -- writing ----------------------------------------------------------------------------------

def test_upsert_many_is_one_transaction(directory):
    bad = dataclasses.replace(PIETER, phones=("12",))
    with pytest.raises(ValueError, match="not a valid phone number"):
        directory.upsert_many([(JAN, None), (bad, None)])
    assert directory.count() == 0
    directory.upsert(JAN)
    with pytest.raises(CustomerExists, match="100001 already exists"):
        directory.upsert_many([(PIETER, None), (dataclasses.replace(JAN, name="Someone Else"), None)], update=False)
    assert directory.count() == 1 and directory.by_number("100001").name == "Jan de Vries"
    assert directory.upsert_many([(PIETER, None), (dataclasses.replace(JAN, phones=("+31687654321",)), None)]) == (1, 1)
    assert directory.by_phone("+31612345678") == []             # phones replaced, not added to
    assert [c.number for c in directory.by_phone("+31687654321")] == ["100001"]


def test_a_customer_needs_a_phone_number(directory):
    with pytest.raises(ValueError, match="at least one phone number"):
        directory.upsert(dataclasses.replace(JAN, phones=()))


# -- sharing ----------------------------------------------------------------------------------

def test_another_process_reads_while_an_import_is_writing(tmp_path):
    path = tmp_path / "customers.sqlite3"
    with SqliteDirectory(path) as setup:
        setup.upsert(JAN)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE customers SET name = 'Changed Mid-Import' WHERE number = '100001'")
    reader = ("import sys; from voicebot.identity.directory import SqliteDirectory; "
              "d = SqliteDirectory(sys.argv[1], busy_timeout_ms=100); print(d.by_number('100001').name)")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    try:
        during = subprocess.run([sys.executable, "-c", reader, str(path)], capture_output=True, text=True,
                                timeout=120, env=env)
        assert during.returncode == 0, during.stderr
        assert during.stdout.strip() == "Jan de Vries"          # the committed state, without waiting
        writer.execute("COMMIT")
    finally:
        writer.close()
    after = subprocess.run([sys.executable, "-c", reader, str(path)], capture_output=True, text=True,
                           timeout=120, env=env)
    assert after.stdout.strip() == "Changed Mid-Import", after.stderr


def test_threads_read_while_one_writes(directory):
    directory.upsert_many([(JAN, None), (PIETER, None), (SANNE, None)])
    stop = threading.Event()

    def write() -> int:
        rounds = 0
        while not stop.is_set() and rounds < 200:
            rounds += 1
            directory.upsert_many([(dataclasses.replace(JAN, name=f"Jan {rounds}"), None), (SANNE, None)])
        return rounds

    def read(_: int) -> tuple[str, int]:
        jan = directory.by_number("100001")
        household = directory.by_address("9711EF", "3")
        return jan.name, len(household)

    with ThreadPoolExecutor(max_workers=6) as pool:
        writer = pool.submit(write)
        try:
            results = list(pool.map(read, range(300)))
        finally:
            stop.set()
        assert writer.result(timeout=120) >= 1
    assert all(name.startswith("Jan") and household == 2 for name, household in results)


def _child_lookup(directory: SqliteDirectory, out) -> None:     # runs in a forked process
    out.send(directory.by_number("100001").name)
    out.close()


def test_a_forked_worker_opens_its_own_connection(directory):
    directory.upsert(JAN)
    assert directory.by_number("100001") is not None            # the parent's connection is open
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child_lookup, args=(directory, send))
    child.start()
    assert receive.poll(60), "the forked process did not answer"
    assert receive.recv() == "Jan de Vries"
    child.join(60)
    assert child.exitcode == 0
    assert directory.by_number("100001").name == "Jan de Vries"  # the parent's connection still works


# -- choosing the directory -------------------------------------------------------------------

def test_open_directory_follows_the_settings(tmp_path):
    sqlite = open_directory(IdentitySection(database=tmp_path / "c.sqlite3"))
    assert isinstance(sqlite, SqliteDirectory) and sqlite.path == tmp_path / "c.sqlite3"
    crm = open_directory(IdentitySection(directory="http", crm_url="https://crm.example.nl/api/",
                                         crm_token="t0ken", crm_timeout_seconds=1.5))
    assert isinstance(crm, CrmDirectory) and crm.base_url == "https://crm.example.nl/api"
    assert crm.timeout_seconds == 1.5
    with pytest.raises(ConfigError, match="crm_url"):
        open_directory(IdentitySection(directory="http", crm_token="t0ken"))
    with pytest.raises(ConfigError, match="VOICEBOT_CRM_TOKEN"):
        open_directory(IdentitySection(directory="http", crm_url="https://crm.example.nl/api"))


# -- the written forms ------------------------------------------------------------------------

@pytest.mark.parametrize("written, stored", [("1234ab", "1234AB"), (" 1234 AB ", "1234AB"), ("9999zz", "9999ZZ")])
def test_postcodes(written, stored):
    assert fields.postcode(written) == stored


@pytest.mark.parametrize("written", ["0123AB", "123AB", "1234A", "1234SS", "12345AB", "ABCD12", ""])
def test_bad_postcodes_are_refused_without_repeating_them(written):
    with pytest.raises(ValueError) as caught:
        fields.postcode(written)
    assert written.strip() == "" or written not in str(caught.value)


@pytest.mark.parametrize("written, stored", [("12", "12"), ("12a", "12A"), ("12 A", "12A"), ("12-2", "12-2"),
                                             ("12 2", "12-2"), ("7bis", "7BIS")])
def test_house_numbers(written, stored):
    assert fields.house_number(written) == stored


@pytest.mark.parametrize("written", ["", "0", "twelve", "12--2", "123456"])
def test_bad_house_numbers(written):
    with pytest.raises(ValueError, match="house number"):
        fields.house_number(written)


def test_birth_dates_are_iso_in_the_past():
    assert fields.birth_date("1975-03-14") == dt.date(1975, 3, 14)
    for written in ("14-03-1975", "1975-3-14", "1975-02-30", "14 maart 1975", ""):
        with pytest.raises(ValueError, match="YYYY-MM-DD") as caught:
            fields.birth_date(written)
        assert not written or written not in str(caught.value)
    with pytest.raises(ValueError, match="future"):
        fields.birth_date("2031-01-01", today=dt.date(2030, 12, 31))
    with pytest.raises(ValueError, match="before 1900"):
        fields.birth_date("1899-12-31")


def test_pins_are_four_to_eight_digits_and_never_repeated():
    assert fields.pin(" 0042 ") == "0042"
    for written in ("123", "123456789", "12a4", "١٢٣٤", ""):
        with pytest.raises(ValueError, match="4 to 8 digits") as caught:
            fields.pin(written)
        assert not written or written not in str(caught.value)
