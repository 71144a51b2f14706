"""What a grader test uses to fail with a message a student can act on (Japanese first, then English)."""

from __future__ import annotations


class CheckFailed(AssertionError):
    """A check's verdict, with the explanation shown to the student."""

    def __init__(self, ja: str, en: str):
        super().__init__(f"{ja}\n{en}")
        self.ja, self.en = ja, en


def fail(ja: str, en: str) -> None:
    raise CheckFailed(ja, en)


def shape_text(shape) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def expect_shape(name: str, array, expected: tuple) -> None:
    if tuple(array.shape) != tuple(expected):
        fail(f"{name} の形は {shape_text(expected)} のはずですが、{shape_text(array.shape)} でした。",
             f"{name} should have shape {shape_text(expected)}, found {shape_text(array.shape)}.")
