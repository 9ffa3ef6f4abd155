"""The operator commands: nlu JSON and the interactive text call."""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from voicebot.cli import main

REPO = Path(__file__).resolve().parent.parent
ENERGIE = str(REPO / "flows" / "energie.yaml")


def test_nlu_prints_intent_and_slots():
    result = CliRunner().invoke(main, ["nlu", "--flow", ENERGIE, "eh ik wil mijn meterstand doorgeven"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"intent", "confidence", "alternatives", "slots"}
    assert data["intent"] == "meterstand_doorgeven"
    assert 0 < data["confidence"] <= 1 and data["alternatives"][0]["intent"] != "meterstand_doorgeven"
    out = json.loads(CliRunner().invoke(main, ["nlu", "--flow", ENERGIE, "ik wil een pizza bestellen"]).output)
    assert out["intent"] is None
    slots = json.loads(CliRunner().invoke(main, ["nlu", "--flow", ENERGIE,
                                                 "mijn postcode is twaalf vierendertig a b"]).output)["slots"]
    assert slots == {"postcode": "1234 AB"}


def test_nlu_defaults_to_configured_flow(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["nlu", "storing melden"])
    assert json.loads(result.output)["intent"] == "storing_melden"


def test_chat_interactive_until_transfer():
    lines = "ik wil mijn meterstand doorgeven\n\nmedewerker\n"
    result = CliRunner().invoke(main, ["chat", "--flow", ENERGIE, "--at", "2026-11-23T10:00:00"], input=lines)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "digitale assistent" in out
    assert "[intent: meterstand_doorgeven" in out
    assert "hoorde niets" in out
    assert "reason explicit_request" in out
    assert '"summary"' in out and '"transcript"' in out


def _demo_directory(tmp_path) -> str:
    """A config.yaml whose customer directory holds the demo customers (as `make run` loads them)
    and whose Redis does not answer, so the chat counts failed checks in its own process."""
    from conftest import _free_port

    config = tmp_path / "config.yaml"
    config.write_text(f"flows: {{dir: {REPO / 'flows'}}}\nredis: {{url: 'redis://127.0.0.1:{_free_port()}/0'}}\n"
                      f"identity: {{database: {tmp_path / 'customers.sqlite3'}}}\n")
    imported = CliRunner().invoke(main, ["--config", str(config), "customers", "import",
                                         str(REPO / "flows" / "customers-demo.csv"), "--update"])
    assert imported.exit_code == 0, imported.output
    return str(config)


def test_chat_verifies_a_demo_customer_before_a_meter_reading(tmp_path):
    lines = "ik wil mijn meterstand doorgeven\n100001\nveertien maart negentien vijfenzeventig\n12345\nja\n"
    result = CliRunner().invoke(main, ["--config", _demo_directory(tmp_path), "chat", "--at", "2026-11-23T10:00:00"],
                                input=lines)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "failed identity checks count in this chat only" in out
    asked = [out.index(text) for text in ("bot> Wat is uw klantnummer?", "bot> Wat is uw geboortedatum?",
                                          "bot> Dank u, dat klopt.", "bot> Wat is de meterstand?",
                                          "bot> Dank u wel. Uw meterstand 12345 is genoteerd.")]
    assert asked == sorted(asked)


def test_chat_refuses_after_three_wrong_dates_of_birth(tmp_path):
    wrong = ["een mei negentien tachtig", "twee februari tweeduizend", "drie maart negentien zestig"]
    lines = "ik wil mijn meterstand doorgeven\n" + "".join(f"100001\n{date}\n" for date in wrong)
    result = CliRunner().invoke(main, ["--config", _demo_directory(tmp_path), "chat", "--at", "2026-11-23T10:00:00"],
                                input=lines)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("bot> Dat klopt helaas niet.") == 3 and "Wat is de meterstand?" not in out
    assert "[transfer to queue 'algemeen', reason verification_failed]" in out
    context, _ = json.JSONDecoder().raw_decode(out, out.index("{", out.index("reason verification_failed")))
    assert context["identity"]["verified"] is False
    assert context["identity"]["attempts"] == [{"method": "customer_dob", "outcome": "no_match"}] * 3


def test_chat_end_of_input_hangs_up():
    result = CliRunner().invoke(main, ["chat", "--flow", ENERGIE], input="")
    assert result.exit_code == 0 and "caller hung up" in result.output


def test_dialog_core_imports_no_adapters():
    code = ("import sys, voicebot.dialog.engine, voicebot.simulator; "
            "bad = [m for m in ('flask', 'flask_sock', 'redis', 'rq', 'vosk', 'pyttsx3', 'twilio', 'gunicorn') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_config_and_bad_flows_are_one_clear_error(tmp_path):
    from click.testing import CliRunner

    from voicebot.cli import main

    bad = tmp_path / "config.yaml"
    bad.write_text("dialog:\n  max_turnz: 3\n")
    result = CliRunner().invoke(main, ["--config", str(bad), "flows", "check"])
    assert result.exit_code == 1 and "unknown setting 'dialog.max_turnz'" in result.output
    assert "Traceback" not in result.output
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "broken.yaml").write_text("flow: x\nlanguage: nl\nstart: nowhere\nsteps: {}\n")
    good = tmp_path / "ok.yaml"
    good.write_text(f"flows: {{dir: {flows}}}\n")
    result = CliRunner().invoke(main, ["--config", str(good), "serve", "--dev", "--port", "0"])
    assert result.exit_code == 1 and "cannot start" in result.output and "broken.yaml" in result.output


def test_serve_refuses_to_start_unconfigured_outside_development_mode(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"flows: {{dir: {REPO / 'tests' / 'data'}, default: mini}}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "serve", "--port", "0"], env={"VOICEBOT_DEV": None})
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("\n") == 1
    assert "TWILIO_AUTH_TOKEN and PUBLIC_URL not set" in result.output and "--dev" in result.output
    result = CliRunner().invoke(main, ["--config", str(config), "serve", "--port", "0"],
                                env={"TWILIO_AUTH_TOKEN": "t", "VOICEBOT_DEV": None})
    assert result.exit_code == 1 and "PUBLIC_URL not set" in result.output and "TWILIO_AUTH_TOKEN" not in result.output


SALT_ERROR = "VOICEBOT_HASH_SALT not set"
RECIPE = "python3 -c 'import secrets; print(secrets.token_hex(32))'"


def test_serve_refuses_to_start_without_a_hash_salt(tmp_path):
    """Secret answers and calling numbers are kept as hashes keyed with the salt: no salt, no server."""
    config = tmp_path / "config.yaml"
    config.write_text(f"flows: {{dir: {REPO / 'tests' / 'data'}, default: mini}}\n")
    twilio = {"TWILIO_AUTH_TOKEN": "t", "PUBLIC_URL": "https://bot.example.com", "VOICEBOT_DEV": None}
    result = CliRunner().invoke(main, ["--config", str(config), "serve", "--port", "0"],
                                env={**twilio, "VOICEBOT_HASH_SALT": None})
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("\n") == 1 and SALT_ERROR in result.output and RECIPE in result.output
    assert "--dev" in result.output and "TWILIO_AUTH_TOKEN" not in result.output
    assert not (tmp_path / ".run" / "hash-salt").exists()      # production never makes its own
    result = CliRunner().invoke(main, ["--config", str(config), "serve", "--port", "0"],
                                env={**twilio, "VOICEBOT_HASH_SALT": "short"})
    assert result.exit_code == 1 and "VOICEBOT_HASH_SALT is too short (5 characters" in result.output
    result = CliRunner().invoke(main, ["--config", str(config), "serve", "--port", "0"],
                                env={**twilio, "TWILIO_AUTH_TOKEN": None, "VOICEBOT_HASH_SALT": None})
    assert result.output.count("\n") == 1                        # both reasons, one line
    assert "TWILIO_AUTH_TOKEN not set" in result.output and SALT_ERROR in result.output


def test_the_recipe_in_the_salt_error_makes_an_accepted_salt():
    import subprocess
    import sys

    from voicebot.telephony.devmode import SALT_RECIPE, salt_problem

    assert SALT_RECIPE == RECIPE
    made = subprocess.run([sys.executable, "-c", RECIPE.split("'")[1]], capture_output=True, text=True, check=True)
    assert salt_problem(made.stdout.strip()) is None


def test_development_mode_keeps_a_private_local_salt(tmp_path):
    import os
    import stat

    from voicebot.config import load_settings
    from voicebot.telephony.devmode import apply_dev_mode

    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    settings, line = apply_dev_mode(load_settings(config, environ={}), 5099)
    path = tmp_path / ".run" / "hash-salt"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert settings.hash_salt == path.read_text().strip() and len(settings.hash_salt) >= 32
    assert str(path) in line and settings.hash_salt not in line
    again, _ = apply_dev_mode(load_settings(config, environ={}), 5099)
    assert again.hash_salt == settings.hash_salt            # kept: hashes written earlier are found again
    assert sorted(p.name for p in path.parent.iterdir()) == ["desk-secret", "dev-auth-token", "hash-salt"]
    given, line = apply_dev_mode(load_settings(config, environ={"VOICEBOT_HASH_SALT": "x" * 40}), 5099)
    assert given.hash_salt == "x" * 40 and "VOICEBOT_HASH_SALT" in line
    path.write_text("")                                      # emptied by hand: made anew
    fresh, _ = apply_dev_mode(load_settings(config, environ={}), 5099)
    assert len(fresh.hash_salt) >= 32 and fresh.hash_salt == path.read_text().strip()


def test_development_mode_binds_loopback_and_writes_a_private_token(tmp_path):
    import os
    import stat

    from voicebot.config import load_settings
    from voicebot.telephony.devmode import apply_dev_mode, read_dev_token

    config = tmp_path / "config.yaml"
    config.write_text("web: {host: 0.0.0.0}\n")
    settings, line = apply_dev_mode(load_settings(config, environ={}), 5099)
    assert settings.host == "127.0.0.1" and settings.dev
    assert settings.telephony.public_url == "http://127.0.0.1:5099"
    path = tmp_path / ".run" / "dev-auth-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert settings.telephony.auth_token == read_dev_token(tmp_path) and len(settings.telephony.auth_token) >= 24
    assert "development mode" in line and "127.0.0.1:5099" in line and str(path) in line
    again, _ = apply_dev_mode(load_settings(config, environ={}), 5099)
    assert again.telephony.auth_token != settings.telephony.auth_token      # a new token every start
    given, line = apply_dev_mode(load_settings(config, environ={"TWILIO_AUTH_TOKEN": "real",
                                                                "PUBLIC_URL": "https://x.ngrok.app"}), 5099)
    assert given.host == "127.0.0.1" and given.telephony.auth_token == "real"
    assert given.telephony.public_url == "https://x.ngrok.app" and "TWILIO_AUTH_TOKEN" in line


def test_call_picks_up_the_development_token(tmp_path, monkeypatch):
    from voicebot.telephony.devmode import write_dev_token

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("{}\n")
    result = CliRunner().invoke(main, ["call", "--server", "http://127.0.0.1:9", "--dtmf", "1"])
    assert result.exit_code != 0 and "no auth token" in result.output and ".run/dev-auth-token" in result.output
    path = write_dev_token(tmp_path)
    result = CliRunner().invoke(main, ["call", "--server", "http://127.0.0.1:9", "--dtmf", "1"])
    assert f"signing with the development token in {path}" in result.output
    assert "cannot reach the server" in result.output and "Traceback" not in result.output


def _imports() -> dict[str, list[tuple[str, str]]]:
    """Module -> (imported module, imported name or "") for every import in voicebot/, also inside functions."""
    import ast

    package = REPO / "voicebot"
    found: dict[str, list[tuple[str, str]]] = {}
    for file in package.rglob("*.py"):
        parts = list(file.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        edges = found.setdefault(module, [])
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges += [(alias.name, "") for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    base = ".".join(anchor[:len(anchor) - node.level + 1] + ([base] if base else []))
                edges += [(base, alias.name) for alias in node.names]
    return found


def test_no_module_imports_a_private_name_of_another():
    modules = _imports()
    private = [f"{module} imports {base}.{name}" for module, edges in modules.items() for base, name in edges
               if name.startswith("_") and not name.startswith("__") and base.startswith("voicebot")
               and base != module]
    assert private == []


def test_commands_never_import_the_command_line():
    back = [f"{module} imports {base}" for module, edges in _imports().items() if module.startswith("voicebot.commands")
            for base, name in edges if base == "voicebot.cli" or (base == "voicebot" and name == "cli")]
    assert back == []


def test_chat_keypad_is_a_call_without_speech():
    from click.testing import CliRunner

    from voicebot.cli import main

    result = CliRunner().invoke(main, ["chat", "--keypad"], input="#1\n")
    assert result.exit_code == 0, result.output
    assert "Toets 1 voor uw meterstand doorgeven" in result.output
    assert "Toets de cijfers in" in result.output
