"""Every kind of flow error is reported with file, line and what is wrong."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from voicebot.cli import main
from voicebot.errors import FlowError
from voicebot.flow import load_flow

MINI = Path(__file__).parent / "data" / "mini.yaml"


def broken(tmp_path, old: str, new: str) -> Path:
    text = MINI.read_text()
    assert old in text, old
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def problems(path: Path) -> list[str]:
    with pytest.raises(FlowError) as info:
        load_flow(path)
    return [str(p) for p in info.value.problems]


def test_mini_flow_is_valid():
    assert load_flow(MINI).id == "mini"


@pytest.mark.parametrize("old, new, marker, message", [
    ("    slot_type: number\n", "    slot_type: number\n    nxt: einde\n", "nxt: einde",
     "step 'stand': 'nxt' is not a setting of an ask step; did you mean 'next'?"),
    ("    next: geboortedatum\n", "    next: geboortedatm\n", "next: geboortedatm",
     "missing step 'geboortedatm'; did you mean 'geboortedatum'?"),
    ("    open: naar_medewerker\n", "    open: nergens\n", "open: nergens", "missing step 'nergens'"),
    ("    type: say\n    say: Dank u", "    type: sayy\n    say: Dank u", "type: sayy",
     "unknown step type 'sayy'; did you mean 'say'?"),
    ("    say: Wat is de meterstand?\n", "", "  stand:", "has no prompt"),
    ("    say: Wilt u een samenvatting per sms?\n",
     "    say: Wilt u een samenvatting per sms?\n    prompt: sms_vraag\n", "prompt: sms_vraag", "both 'say' and 'prompt'"),
    ("  stand:\n    type: ask\n", "  stand:\n    type: ask\n    prompt: onbekend\n", "prompt: onbekend",
     "prompt 'onbekend' is not defined"),
    ("U spreekt met een digitale assistent.", "Fijn dat u belt.", "  welkom:", "digital assistant"),
    ("    next: bevestigd\n", "", "  stand:", "has no 'next'"),
    ("    branches: {yes: sms, no: einde}\n", "    branches: {yes: sms}\n", "  sms_vraag:", "dead end"),
    ("    branches: {yes: sms, no: einde}\n", "    branches: {yes: sms, no: einde, maybe: einde}\n",
     "branches:", "can never be chosen"),
    ("routes: {meterstand: klantnummer,", "routes: {verhuizen: klantnummer, meterstand: klantnummer,", "routes:",
     "unknown intent 'verhuizen'"),
    ("routes: {meterstand: klantnummer,", "routes: {meterstnd: klantnummer,", "routes:",
     "step 'menu' routes unknown intent 'meterstnd'; did you mean 'meterstand'?"),
    ("Dank u, meterstand {meterstand}", "Dank u, {geboortedatum} meterstand {meterstand}", "Dank u,",
     "secret slot 'geboortedatum'"),
    ("Dank u, meterstand {meterstand}", "Dank u, {postcode} meterstand {meterstand}", "Dank u,",
     "not asked on every path"),
    ("Dank u, meterstand {meterstand}", "Dank u, {kleur} meterstand {meterstand}", "Dank u,",
     "unknown placeholder '{kleur}'"),
    ("  weekly: {mon: \"08:00-18:00\",", "  weekly: {mon: \"18:00-08:00\",", "weekly:", "ends before it starts"),
    ("  timezone: Europe/Amsterdam", "  timezone: Europe/Amsterdm", "timezone:", "unknown time zone"),
    ("    slot_type: postcode\n", "    slot_type: postcod\n", "slot_type: postcod",
     "step 'postcode': 'postcod' is not a valid slot_type; did you mean 'postcode'?"),
    ("    retries: 1\n" if False else "    slot_type: number\n", "    slot_type: number\n    retries: twee\n",
     "retries: twee", "step 'stand': 'retries' should be a whole number, not 'twee'"),
    ("    length: [6, 8]\n", "    length: [8, 6]\n", "length: [8, 6]", "length must be"),
    ("start: welkom", "start: begin", "start: begin", "start step 'begin' does not exist"),
    ("start: welkom", "start: welkm", "start: welkm", "start step 'welkm' does not exist; did you mean 'welkom'?"),
])
def test_each_error_names_file_line_and_problem(tmp_path, old, new, marker, message):
    path = broken(tmp_path, old, new)
    found = problems(path)
    expected_prefix = f"{path}:{line_of(path, marker)}:"
    assert any(p.startswith(expected_prefix) and message in p for p in found), (expected_prefix, message, found)


def test_unreachable_step(tmp_path):
    path = broken(tmp_path, "  einde:\n", "  los:\n    type: hangup\n    say: Dag.\n  einde:\n")
    assert f"{path}:{line_of(path, '  los:')}: step 'los' is unreachable from start step 'welkom'" in problems(path)


def test_loop_without_exit_is_a_dead_end(tmp_path):
    text = MINI.read_text().replace("    next: sms_vraag\n", "    next: lus\n", 1)
    text += "  lus:\n    type: say\n    say: Nog even.\n    next: bevestigd\n"
    path = tmp_path / "loop.yaml"
    path.write_text(text)
    found = problems(path)
    assert any("step 'lus' has no way out" in p and p.startswith(f"{path}:{line_of(path, '  lus:')}:") for p in found)


def test_duplicate_keys_and_bad_yaml(tmp_path):
    path = broken(tmp_path, "  stand:\n", "  tijden:\n    type: hangup\n  stand:\n")
    assert any("key 'tijden' appears twice" in p for p in problems(path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: x\nsteps: [\n")
    assert problems(bad)[0].startswith(f"{bad}:")
    assert "not valid YAML" in problems(bad)[0]


def test_all_problems_reported_at_once(tmp_path):
    """A schema error (an unknown key) does not stop the checks of the steps' transitions."""
    path = broken(tmp_path, "    next: geboortedatum\n", "    next: nergens\n    kleur: rood\n")
    path.write_text(path.read_text().replace("    next: bevestigd\n", "    next: ookweg\n"))
    found = problems(path)
    expected = [
        (line_of(path, "kleur: rood"), "step 'klantnummer': 'kleur' is not a setting of an ask step"),
        (line_of(path, "next: nergens"), "step 'klantnummer': next goes to missing step 'nergens'"),
        (line_of(path, "next: ookweg"), "step 'stand': next goes to missing step 'ookweg'"),
    ]
    for line, message in expected:
        assert any(p.startswith(f"{path}:{line}: {message}") for p in found), (line, message, found)


def test_a_misspelt_step_name_is_one_problem_with_a_suggestion(tmp_path):
    path = broken(tmp_path, "storing: postcode,", "storing: postcdoe,")
    [only] = problems(path)
    head, *follow = only.splitlines()
    assert head == f"{path}:{line_of(path, 'storing: postcdoe')}: step 'menu': routes.storing goes to missing " \
        "step 'postcdoe'; did you mean 'postcode'?"
    # Its knock-on problems are listed once, under it, with their own lines.
    assert "4 more problems follow from this" in follow[0]
    assert f"line {line_of(path, '  postcode:')}: step 'postcode' is unreachable" in "\n".join(follow)


def test_a_misspelt_key_is_checked_as_meant(tmp_path):
    path = broken(tmp_path, "    next: bevestigd\n", "    naxt: bevestigd\n")
    assert problems(path) == [f"{path}:{line_of(path, 'naxt:')}: step 'stand': 'naxt' is not a setting of an ask "
                              "step; did you mean 'next'?"]


def test_a_dedented_setting_is_named_as_such(tmp_path):
    path = broken(tmp_path, "    next: menu\n", "  next: menu\n")
    [only] = problems(path)
    assert only.startswith(f"{path}:{line_of(path, '  next: menu')}: 'next' is at the wrong indentation: it is "
                           "read as a step of its own, but it is a setting of step 'welkom' above it")
    assert f"step 'welkom' on line {line_of(path, '  welkom:')} has no 'next'" in only
    assert "dictionary" not in only


@pytest.mark.parametrize("old, new, marker, message", [
    ("    slot_type: digits\n", "    slot_type digits\n", "slot_type digits", "has no ':' after its key"),
    ("    say: Wat is uw klantnummer?\n", '    say: "Wat is uw klantnummer?\n', '"Wat is uw', "never closed"),
    ("openingstijden: tijden}\n", "openingstijden: tijden\n", "openingstijden: tijden", "'{' opened on this line"),
    ("    say: Wat is uw klantnummer?\n", "    say: Wat is uw klantnummer: nu?\n", "klantnummer: nu", "second ':'"),
    ("    say: Wat is uw postcode?\n", "    say: Wat is uw postcode?\n   slot: x\n", "   slot: x",
     "indented differently"),
])
def test_yaml_syntax_errors_point_at_the_line_to_fix(tmp_path, old, new, marker, message):
    path = broken(tmp_path, old, new)
    [only] = problems(path)
    assert only.startswith(f"{path}:{line_of(path, marker)}: not valid YAML: "), only
    assert message in only


def test_secret_confirm_with_value_is_refused(tmp_path):
    path = broken(tmp_path, "    secret: true\n", "    secret: true\n    confirm: Is {value} goed?\n")
    assert any("secret slot must never be said back" in p for p in problems(path))


def test_language_without_messages(tmp_path):
    path = broken(tmp_path, "language: nl", "language: fy")
    found = problems(path)
    assert any("language 'fy' has no built-in messages" in p for p in found)
    assert any("no words to ask for an agent" in p for p in found)


def test_flows_check_command(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["flows", "check", str(MINI)])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output
    bad = broken(tmp_path, "    next: geboortedatum\n", "    next: nergens\n")
    result = runner.invoke(main, ["flows", "check", str(MINI), str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:{line_of(bad, 'next: nergens')}: step 'klantnummer': next goes to missing step 'nergens'" \
        in result.output
    missing = runner.invoke(main, ["flows", "check", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "cannot read file" in missing.output


# -- identity and verify steps ---------------------------------------------------------------------

VERIFY = Path(__file__).parent / "data" / "verify" / "verify.yaml"


def verify_broken(tmp_path, old: str, new: str) -> Path:
    text = VERIFY.read_text()
    assert old in text, old
    path = tmp_path / "verify.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_verify_flow_is_valid():
    flow = load_flow(VERIFY)
    assert flow.spec.steps["identificatie"].type == "verify"
    assert flow.spec.intents["meterstand"].identity == "verified" and flow.spec.intents["meterstand"].topic


@pytest.mark.parametrize("old, new, marker, message", [
    ("methods: [caller_id, customer_dob, pin]", "methods: [caller_id, customer_dobb, pin]", "customer_dobb",
     "step 'identificatie': unknown verification method 'customer_dobb'; did you mean 'customer_dob'?"),
    ("methods: [pin]\n", "methods: [pin, pin]\n", "methods: [pin, pin]", "method 'pin' is listed twice"),
    ("    identity: verified\n", "    identity: verifeid\n", "identity: verifeid",
     "intent 'meterstand' needs unknown identity level 'verifeid'; did you mean 'verified'?"),
    ("    methods: [pin]\n", "    methods: [pin]\n    level: verfied\n", "level: verfied",
     "step 'pin_controle': unknown identity level 'verfied'; did you mean 'verified'?"),
    ("    methods: [postcode_house]\n", "    methods: [postcode_house]\n    level: verified\n", "level: verified",
     "step 'adres_controle': level 'verified' cannot be reached with these methods (the highest they give is "
     "'known')"),
    ("customer_dob: verified, postcode_house: known, pin: verified}",
     "customer_dob: known, postcode_house: known, pin: known}", "    identity: verified",
     "intent 'meterstand' needs identity level 'verified', which no verify step's methods reach (the highest "
     "they give is 'known')"),
    ("  max_attempts: 3", "  max_attempts: 11", "max_attempts: 11", "'identity': 'max_attempts' must be at most 10, "
     "not 11"),
    ("  max_attempts: 3", "  max_attempts: 0", "max_attempts: 0", "'identity': 'max_attempts' must be at least 1"),
    ("  max_attempts: 3", "  max_attempt: 3", "max_attempt: 3",
     "'max_attempt' is not a setting of 'identity'; did you mean 'max_attempts'?"),
    ("{caller_id: known,", "{caller_ide: known,", "caller_ide",
     "identity.methods: unknown verification method 'caller_ide'; did you mean 'caller_id'?"),
    ("customer_dob: verified,", "customer_dob: verifeid,", "customer_dob: verifeid",
     "identity.methods: method 'customer_dob' gives unknown level 'verifeid'; did you mean 'verified'?"),
    ("{caller_id: known,", "{caller_id: verified,", "caller_id: verified",
     "identity.methods: caller_id cannot give the highest level 'verified': a calling number can be spoofed"),
    ("levels: [none, known, verified]", "levels: [none, known, known, verified]", "levels:",
     "identity level 'known' is listed twice"),
    ("    methods: [pin]\n", "    method: [pin]\n", "method: [pin]",
     "step 'pin_controle': 'method' is not a setting of a verify step; did you mean 'methods'?"),
    ("    slot: customer_number\n    slot_type: digits\n", "    slot: customer_number\n    slot_type: text\n",
     "slot_type: text", "step 'rekening_klantnummer': slot 'customer_number' is read by verification as a customer "
     "number, so it must be slot_type digits"),
    ("    methods: [pin]\n    next: rekening_wijzigen\n", "    methods: [pin]\n", "  pin_controle:",
     "verify step 'pin_controle' has no 'next', but step 'rekening_klantnummer' goes to it (next)"),
])
def test_each_identity_error_names_file_line_and_problem(tmp_path, old, new, marker, message):
    path = verify_broken(tmp_path, old, new)
    found = problems(path)
    expected_prefix = f"{path}:{line_of(path, marker)}:"
    assert any(p.startswith(expected_prefix) and message in p for p in found), (expected_prefix, message, found)


def test_custom_level_names_need_the_methods_levels(tmp_path):
    path = verify_broken(tmp_path, "  levels: [none, known, verified]\n  methods: {caller_id: known, customer_dob: "
                         "verified, postcode_house: known, pin: verified}\n", "  levels: [anoniem, bekend, zeker]\n")
    found = problems(path)
    line = line_of(path, "methods: [caller_id, customer_dob, pin]")
    assert f"{path}:{line}: step 'identificatie': method 'caller_id' gives level 'known', which is not one of the " \
        "flow's levels (anoniem, bekend, zeker); name its level under identity.methods" in found
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(path.read_text().replace(
        "  levels: [anoniem, bekend, zeker]\n",
        "  levels: [anoniem, bekend, zeker]\n  methods: {caller_id: bekend, customer_dob: zeker, "
        "postcode_house: bekend, pin: zeker}\n").replace("identity: verified", "identity: zeker")
        .replace("identity: known", "identity: bekend"))
    assert load_flow(fixed).spec.identity.levels == ["anoniem", "bekend", "zeker"]


def test_a_broken_identity_setting_leaves_the_rest_of_the_section_checked(tmp_path):
    path = verify_broken(tmp_path, "  levels: [none, known, verified]\n  methods: {caller_id: known, customer_dob: "
                         "verified, postcode_house: known, pin: verified}\n  max_attempts: 3\n",
                         "  levels: [anoniem, bekend, zeker]\n  methods: {caller_id: bekend, customer_dob: zeker, "
                         "postcode_house: bekend, pin: zeker}\n  max_attempts: 30\n")
    path.write_text(path.read_text().replace("identity: verified", "identity: zeker")
                    .replace("identity: known", "identity: bekend"))
    assert problems(path) == [f"{path}:{line_of(path, 'max_attempts: 30')}: 'identity': 'max_attempts' must be "
                              "at most 10, not 30"]


def test_an_intent_needing_identity_in_a_flow_without_verify_step(tmp_path):
    path = broken(tmp_path, "    label: uw meterstand doorgeven\n",
                  "    label: uw meterstand doorgeven\n    identity: verified\n")
    assert f"{path}:{line_of(path, 'identity: verified')}: intent 'meterstand' needs identity level 'verified', " \
        "but the flow has no verify step to find out who is calling: add a step with 'type: verify'" in problems(path)


def test_a_verify_step_nothing_enters_is_unreachable(tmp_path):
    path = verify_broken(tmp_path, "  stand:\n", "  los:\n    type: verify\n    methods: [pin]\n  stand:\n")
    assert f"{path}:{line_of(path, '  los:')}: step 'los' is unreachable from start step 'welkom' (no step goes to " \
        "it, and no intent a route can take needs a level it guards)" in problems(path)


def test_a_guarding_verify_step_is_reachable_only_through_the_intents_that_need_it(tmp_path):
    path = verify_broken(tmp_path, "    identity: verified\n", "")
    path.write_text(path.read_text().replace("    identity: known\n", ""))
    assert any("step 'identificatie' is unreachable" in p for p in problems(path))


def test_verify_messages_are_needed_only_in_a_flow_that_verifies(tmp_path):
    path = verify_broken(tmp_path, "language: nl", "language: fy")
    [missing] = [p for p in problems(path) if "has no built-in messages" in p]
    assert "verify_customer_number" in missing and "reason_verification_failed" in missing
    mini = broken(tmp_path, "language: nl", "language: fy")
    [missing] = [p.split("define these under 'messages': ")[1] for p in problems(mini)
                 if "has no built-in messages" in p]
    assert "verify_" not in missing and "summary_identity" not in missing and "confirm_value" in missing


QUESTIONS = Path(__file__).parent / "data" / "identity_questions.yaml"


def questions_broken(tmp_path, old: str, new: str) -> Path:
    text = QUESTIONS.read_text()
    assert old in text, old
    path = tmp_path / "questions.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


PIN_STEP = "    slot_type: pin\n    length: 4\n"
BIRTH_STEP = "    slot_type: birth_date\n"


def test_the_identity_questions_flow_is_valid():
    assert load_flow(QUESTIONS).step("pin").length_range == (4, 4)


@pytest.mark.parametrize("old, new, marker, message", [
    (PIN_STEP, PIN_STEP + "    input: speech\n", "input: speech",
     "step 'pin': a PIN is keyed only, never said aloud (anyone near the caller could hear it): "
     "remove 'input' or write 'input: dtmf'"),
    (PIN_STEP, PIN_STEP + "    input: both\n", "input: both", "step 'pin': a PIN is keyed only"),
    (PIN_STEP, "    slot_type: pin\n    length: 3\n", "length: 3",
     "step 'pin': a PIN has 4 to 8 digits, so its length must lie within 4 to 8"),
    (PIN_STEP, "    slot_type: pin\n    length: [4, 10]\n", "length: [4, 10]", "a PIN has 4 to 8 digits"),
    ("    slot_type: house_number\n", "    slot_type: house_number\n    length: 4\n", "length: 4",
     "step 'huis': 'length' only applies to slot_type digits and pin"),
    (BIRTH_STEP, BIRTH_STEP + "    confirm: Ik noteer {value}, klopt dat?\n", "confirm: Ik noteer",
     "step 'geboren': a secret slot must never be said back, so it is never confirmed: remove 'confirm'"),
    (BIRTH_STEP, BIRTH_STEP + "    confirm: Heeft u uw geboortedatum gegeven?\n", "confirm: Heeft u",
     "a secret slot must never be said back"),
    (PIN_STEP, PIN_STEP + "    confirm: Klopt {value}?\n", "confirm: Klopt", "a secret slot must never be said back"),
    ("    say: Ik verbind u door met een medewerker.\n",
     "    say: Ik verbind u door, uw geboortedatum is {geboortedatum}.\n", "uw geboortedatum is",
     "step 'klaar': say would say secret slot 'geboortedatum' aloud"),
    ("    say: Ik verbind u door met een medewerker.\n", "    say: Ik verbind u door, pincode {pincode}.\n",
     "pincode {pincode}", "would say secret slot 'pincode' aloud"),
])
def test_identity_slot_types_in_ask_steps(tmp_path, old, new, marker, message):
    path = questions_broken(tmp_path, old, new)
    found = problems(path)
    expected_prefix = f"{path}:{line_of(path, marker)}:"
    assert any(p.startswith(expected_prefix) and message in p for p in found), (expected_prefix, message, found)


@pytest.mark.parametrize("new", ["    slot_type: pin\n    length: 4\n    input: dtmf\n",
                                 "    slot_type: pin\n    length: [4, 6]\n", "    slot_type: pin\n    length: 8\n"])
def test_a_pin_may_be_narrowed_and_keyed(tmp_path, new):
    assert load_flow(questions_broken(tmp_path, PIN_STEP, new)).step("pin").input_mode == "dtmf"
