"""No page handler blocks the event loop: an ``async def`` handler hands every service call to the
thread pool (``run_in_threadpool``); plain ``def`` handlers run there already."""

from __future__ import annotations

import ast
import inspect

from service.web import pages


def _calls_on_the_loop(function: ast.AsyncFunctionDef) -> list[str]:
    """Calls of ``rt.<service>.<method>(...)`` made directly in the coroutine's own body."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue  # a nested function runs wherever it is handed to (the thread pool)
            if isinstance(child, ast.Call):
                target = child.func
                while isinstance(target, ast.Attribute):
                    target = target.value
                if isinstance(target, ast.Name) and target.id == "rt":
                    found.append(ast.unparse(child.func))
            visit(child)

    visit(function)
    return found


def test_async_page_handlers_run_services_in_the_thread_pool() -> None:
    tree = ast.parse(inspect.getsource(pages))
    coroutines = [node for node in ast.walk(tree) if isinstance(node, ast.AsyncFunctionDef)]
    assert {"create_sprint", "decide_page", "login", "audit_filter"} <= {c.name for c in coroutines}
    blocking = {c.name: calls for c in coroutines if (calls := _calls_on_the_loop(c))}
    assert blocking == {}, f"service calls on the event loop: {blocking}"


def test_the_check_sees_a_blocking_call() -> None:
    source = "async def handler(rt):\n    rt.review.decide(1)\n    def later():\n        rt.users.list()\n"
    function = ast.parse(source).body[0]
    assert isinstance(function, ast.AsyncFunctionDef)
    assert _calls_on_the_loop(function) == ["rt.review.decide"]
