"""The model's calculator tool: a restricted arithmetic evaluator, never `eval()`.

The expression a model writes between `<|python_start|>` and `<|python_end|>` is parsed with
`ast` and only numbers, + - * / // % **, unary signs, parentheses and `"text".count("x")`
(for spelling tasks, as nanochat) are evaluated. Powers and results are bounded so a model
cannot stall the engine with `9**9**9`. Anything else yields None (no output block).
"""

from __future__ import annotations

import ast
import math
import operator

MAX_CHARS = 200
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e30

BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculatorError(ValueError):
    """An expression outside the calculator's small language."""


def _eval(node: ast.AST):
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, str):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_number(_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _number(_eval(node.left)), _number(_eval(node.right))
        if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or abs(left) > MAX_MAGNITUDE):
            raise CalculatorError("power too large")
        result = BINARY[type(node.op)](left, right)
        return _number(result)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "count"
            and len(node.args) == 1 and not node.keywords):
        text, needle = _eval(node.func.value), _eval(node.args[0])
        if isinstance(text, str) and isinstance(needle, str):
            return text.count(needle)
    raise CalculatorError(f"unsupported expression element {type(node).__name__}")


def _number(value):
    if isinstance(value, complex) or not isinstance(value, (int, float)):
        raise CalculatorError("not a real number")
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("number out of range")
    return value


def format_number(value) -> str:
    """Integers as integers (48/2 -> "24"), other floats with at most 6 decimals."""
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{round(value, 6):.6f}".rstrip("0").rstrip(".")
    return str(value)


def calculate(expression: str) -> str | None:
    """The tool's output text for `expression`, or None when it is not a valid calculation."""
    expression = expression.strip()
    if '"' not in expression and "'" not in expression:
        expression = expression.replace(",", "")  # thousands separators: "1,000*3"
    if not expression or len(expression) > MAX_CHARS:
        return None
    try:
        value = _eval(ast.parse(expression, mode="eval"))
    except (CalculatorError, SyntaxError, ZeroDivisionError, OverflowError, ValueError, RecursionError):
        return None
    if isinstance(value, str):
        return None
    return format_number(value)
