"""The command line in Simplified Chinese under a Chinese locale, English otherwise
(oceandata.cli_i18n, docs/i18n.md): the real console script run with LANG / LANGUAGE /
LC_ALL set, its help, click's usage errors and our own refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.i18n_helpers import CJK, assert_chinese

REPO = Path(__file__).resolve().parents[1]
OCEANDATA = Path(sys.executable).parent / "oceandata"
LOCALE_VARS = ("LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES")


def run(*args: str, **locale: str) -> subprocess.CompletedProcess[str]:
    """``oceandata ARGS`` with only the locale variables given (a wide terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in LOCALE_VARS}
    env.update(locale, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return subprocess.run([str(OCEANDATA), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


ZH = {"LANG": "zh_CN.UTF-8"}


def test_top_help_in_chinese() -> None:
    done = run("--help", **ZH)
    assert done.returncode == 0, done.stderr
    assert_chinese(done.stdout, "oceandata --help (LANG=zh_CN.UTF-8)")
    assert "oceandata：海洋数据目录、访问与计算。" in done.stdout
    assert "用法：oceandata [OPTIONS] COMMAND [ARGS]..." in done.stdout
    assert "显示此帮助信息并退出。" in done.stdout  # click's help option
    assert re.search(r"─ 命令 ─", done.stdout) and re.search(r"─ 选项 ─", done.stdout)
    assert "计算配额与项目" in done.stdout  # alloc, from another module


def test_subcommand_help_in_chinese_from_language() -> None:
    """LANGUAGE=zh_CN alone (LANG an English locale) is enough, as for gettext."""
    done = run("alloc", "request", "--help", LANGUAGE="zh_CN", LANG="C.UTF-8")
    assert done.returncode == 0, done.stderr
    assert_chinese(done.stdout, "oceandata alloc request --help (LANGUAGE=zh_CN)")
    assert "提交配额申请（由管理员审核）。" in done.stdout
    assert "项目负责人。 [必填]" in done.stdout  # typer's "[required]"
    done = run("subset", "--help", LANGUAGE="zh_CN")
    assert_chinese(done.stdout, "oceandata subset --help")
    assert "会先估算输出大小" in done.stdout  # a later paragraph of a command's help
    assert "─ 参数 ─" in done.stdout


def test_usage_error_in_chinese() -> None:
    done = run("catalog", "search", "--bogus", **ZH)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "没有此选项：--bogus" in done.stderr, done.stderr
    assert "运行 'oceandata catalog search --help' 查看帮助。" in done.stderr
    assert_chinese(done.stderr, "bad option")
    done = run("upload", "x.nc", "--project", "1", "--chunk-mib", "100", **ZH)
    assert done.returncode == 2
    assert "'--chunk-mib' 的值无效：应不大于 64" in done.stderr, done.stderr
    done = run("subset", **ZH)
    assert done.returncode == 2
    assert "缺少参数 'name'。" in done.stderr, done.stderr


def test_our_refusals_in_chinese() -> None:
    done = run("catalog", "show", "no_such_dataset", **ZH)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("oceandata：错误：目录 "), lines[0]
    assert "中没有数据集 'no_such_dataset'。" in lines[0]
    assert_chinese(done.stderr, "catalog show refusal")
    done = run("serve", "--port", "0", **ZH)
    assert (done.returncode, done.stderr.strip()) == (
        2, "oceandata：错误：--port 0 不是 TCP 端口：请给出 1-65535")
    done = run("alloc", "members", "7", "promote", **ZH)
    assert done.returncode == 2
    assert "'promote'：请给出 add 或 remove" in done.stderr, done.stderr
    # a message of the libraries stays English, in the Chinese frame
    done = run("catalog", "search", "--time", "2000/1990", **ZH)
    assert done.returncode == 2
    assert done.stderr.startswith("oceandata：错误：--time"), done.stderr


def test_english_by_default() -> None:
    for locale in ({}, {"LANG": "C.UTF-8"}, {"LANG": "en_GB.UTF-8"}, {"LANGUAGE": "fr"}):
        done = run("--help", **locale)
        assert done.returncode == 0, done.stderr
        assert not CJK.search(done.stdout), (locale, done.stdout[:300])
        assert "Usage: oceandata [OPTIONS] COMMAND [ARGS]..." in done.stdout
        assert "oceandata: ocean data catalogs, access and compute." in done.stdout
        assert "Show this message and exit." in done.stdout
    done = run("catalog", "search", "--bogus")
    assert done.returncode == 2
    assert "No such option: --bogus" in done.stderr
    assert "Try 'oceandata catalog search --help' for help." in done.stderr
    done = run("catalog", "show", "no_such_dataset")
    assert done.returncode == 2
    assert done.stderr.startswith("oceandata: error: no dataset 'no_such_dataset' in catalog ")
    assert "Run `oceandata catalog list` to see every name." in done.stderr
    assert not CJK.search(done.stderr)


def test_lc_all_overrides_lang() -> None:
    done = run("--help", LC_ALL="C", LANG="zh_CN.UTF-8")
    assert done.returncode == 0
    assert not CJK.search(done.stdout), done.stdout[:300]
    assert "Show this message and exit." in done.stdout
    done = run("serve", "--port", "0", LC_ALL="C.UTF-8", LANG="zh_CN.UTF-8")
    assert done.stderr.strip() == "oceandata: error: --port 0 is not a TCP port: give 1-65535"


def _in_process(code: str, **locale: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in LOCALE_VARS}
    env.update(locale)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_every_help_text_is_translated() -> None:
    """Each command's, group's, argument's and option's help of the whole tree comes in
    Chinese: a help text left out of _() is found here."""
    done = _in_process("""
        import re
        import typer.main
        from oceandata.cli import app
        cjk = re.compile(r"[\\u4e00-\\u9fff]")
        def walk(cmd, path):
            yield path, "help", cmd.help
            for param in cmd.params:
                yield path, param.name, getattr(param, "help", None)
            for name, sub in getattr(cmd, "commands", {}).items():
                yield from walk(sub, [*path, name])
        missing = [(" ".join(p), what, text) for p, what, text in
                   walk(typer.main.get_command(app), ["oceandata"])
                   if text and not cjk.search(text)]
        print(len(list(walk(typer.main.get_command(app), []))))
        for item in missing:
            print("UNTRANSLATED", item)
    """, **ZH)
    assert done.returncode == 0, done.stderr
    assert "UNTRANSLATED" not in done.stdout, done.stdout
    assert int(done.stdout.split()[0]) > 200  # the walk saw the tree


def test_typer_and_click_messages_are_in_the_catalog() -> None:
    """The texts typer computes at import and click's messages we translate still have
    the msgids we translate (a typer upgrade that changes them fails here)."""
    done = _in_process("""
        from typer import rich_utils
        from oceandata import cli_i18n
        from oceandata.i18n import translations
        zh = translations("zh")
        for name in cli_i18n._RICH_CONSTANTS:
            english = getattr(rich_utils, name)
            assert zh.gettext(english) != english, (name, english)
        import typer.main
        from typer._click.core import Context
        from oceandata.cli import app
        command = typer.main.get_command(app)
        help_option = command.get_help_option(Context(command))
        assert help_option.help == "Show this message and exit.", help_option.help
        print("ok")
    """, LANG="C.UTF-8")
    assert done.stdout.strip() == "ok", done.stderr
    done = _in_process("""
        from oceandata import cli_i18n
        t = cli_i18n.translate_click_message
        print(t("No such option: --x (Possible options: --bbox, --time)"))
        print(t("Got unexpected extra argument(s) (a b)"))
        print(t("Invalid value for '--port': Input should be a valid integer, unable to "
                "parse string as an integer"))
        print(t("Option '--title' requires an argument."))
        print(t("something click never said"))
    """, **ZH)
    assert done.stdout.splitlines() == [
        "没有此选项：--x（可用的选项：--bbox, --time）",
        "多余的参数（a b）",
        "'--port' 的值无效：应为有效的整数",
        "选项 '--title' 需要一个值。",
        "something click never said",
    ], done.stdout + done.stderr


@pytest.mark.parametrize("args", [("alloc", "members", "--help"), ("jobs", "outputs", "--help"),
                                  ("upload", "--help"), ("publish-request", "--help"),
                                  ("submit", "--help")])
def test_partner_commands_help_in_chinese(args: tuple[str, ...]) -> None:
    done = run(*args, **ZH)
    assert done.returncode == 0, done.stderr
    assert_chinese(done.stdout, "oceandata " + " ".join(args))
