"""The test harness's own workarounds (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import _parse_again_after_cpython_106905


def test_a_spurious_ast_recursion_error_is_parsed_again_and_others_are_raised() -> None:
    calls: list[str] = []

    def flaky(text: str) -> str:
        calls.append(text)
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=129, after=145)")
        return f"tree of {text}"

    assert _parse_again_after_cpython_106905(flaky)("x = 1") == "tree of x = 1"
    assert calls == ["x = 1", "x = 1"]

    def broken(text: str) -> str:
        raise SystemError("something else")

    with pytest.raises(SystemError, match="something else"):
        _parse_again_after_cpython_106905(broken)("x = 1")
