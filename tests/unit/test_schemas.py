"""The field rules of the contract."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import ListCommand, LoadJsonCommand, MarkUsedCommand
from schemas.fields import unique_number_problem

GS = "\x1d"


@pytest.mark.parametrize(
    "number",
    [
        f"0104064211748539215%HefMSHY1egL{GS}91EE06{GS}92abc",
        f"{GS}0104064211748539215{GS}",  # GS at either end is part of the code, not whitespace
        "00012",
        "a'b\"c;--/%",
        "x" * 255,
    ],
)
def test_valid_numbers_pass_unchanged(number: str) -> None:
    assert unique_number_problem(number) is None
    entry = {"uniqueNumber": number, "type": "UIT"}
    command = LoadJsonCommand.model_validate(
        {"items": [{"variantId": "1", "uniqueNumbers": [entry]}]}
    )
    assert command.items[0].unique_numbers[0].unique_number == number


@pytest.mark.parametrize(
    ("number", "phrase"),
    [
        ("", "is empty"),
        ("x" * 256, "256 characters long, the limit is 255"),
        (" 123", "whitespace"),
        ("123\n", "whitespace"),
        ("123\u3000", "whitespace"),
        ("12\x003", "U+0000 at position 3"),
        ("12\x1e3", "U+001E"),
        ("12\ud8003", "U+D800"),
    ],
)
def test_numbers_that_cannot_be_stored(number: str, phrase: str) -> None:
    problem = unique_number_problem(number)
    assert problem is not None
    assert phrase in problem


def test_list_bounds() -> None:
    assert ListCommand.model_validate({"variantId": "1"}).size == 10
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        ListCommand.model_validate({"variantId": "1", "size": 1001})
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        ListCommand.model_validate({"variantId": "1", "page": -1})
    with pytest.raises(ValidationError, match="valid integer"):
        ListCommand.model_validate({"variantId": "1", "page": "2"})


def test_types_are_strict() -> None:
    with pytest.raises(ValidationError, match="valid string"):
        MarkUsedCommand.model_validate({"variantId": 1000, "uniqueNumber": "x"})
    with pytest.raises(ValidationError, match="valid boolean"):
        ListCommand.model_validate({"variantId": "1", "isUsed": "false"})
