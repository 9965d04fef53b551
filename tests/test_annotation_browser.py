"""The annotation page in a real browser: headless Chromium through Playwright.

Skipped where Playwright or Chromium is missing (``apt-get install chromium``
and ``pip install playwright``; no browser download is needed), unless the
environment variable ``IMBCFKD_REQUIRE_BROWSER`` is set, as CI sets it: then
a missing browser fails the test instead.
"""

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import make_bars, tiny_cfkd

from imbcfkd import OUT_OF_DISTRIBUTION, AnnotationIncomplete, HumanTeacher
from imbcfkd.annotation import item_id


def _chromium():
    for candidate in (
        os.environ.get("IMBCFKD_CHROMIUM"),
        "chromium",
        "chromium-browser",
    ):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _skip_or_fail(reason):
    if os.environ.get("IMBCFKD_REQUIRE_BROWSER"):
        pytest.fail(f"{reason}, and IMBCFKD_REQUIRE_BROWSER is set")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("Playwright is not installed")
    executable = _chromium()
    if executable is None:
        _skip_or_fail("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    page.set_default_timeout(20_000)
    yield page
    page.close()


def _call_in_thread(teacher, images, originals, result):
    """Call ``teacher`` in a thread; its labels or error land in ``result``."""

    def call():
        try:
            result["labels"] = teacher(images, originals=originals)
        except AnnotationIncomplete as error:
            result["error"] = error

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    return worker


def _wait_for_change(page, shown):
    """Wait until the page shows another item than ``shown``, or a message."""
    page.locator(
        f'#item[data-item]:not([data-item="{shown}"]), #message:not([hidden])'
    ).first.wait_for()


def test_cfkd_receives_exactly_the_answers_given_by_click_and_key(page, tmp_path):
    from playwright.sync_api import TimeoutError, expect

    X, y, _ = make_bars(n_minority=20, imbalance_ratio=2, random_state=0)
    messages = []
    teacher = HumanTeacher(
        [0, 1],
        tmp_path / "annotation",
        class_names=["vertical bar", "horizontal bar"],
        sink=messages.append,
    )
    outcome = {}

    def fit():
        try:
            outcome["clf"] = tiny_cfkd(
                teacher=teacher,
                n_counterfactuals=6,
                n_rounds=2,
                validation_fraction=None,
                teacher_checks_sources=False,
            ).fit(X, y)
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    worker = threading.Thread(target=fit, daemon=True)
    worker.start()
    while not messages and worker.is_alive():
        worker.join(0.05)
    assert messages, outcome
    page.goto(messages[0].split(" at ")[1])

    given = {}
    n_shown = 0
    undone = False
    while worker.is_alive():
        try:
            page.locator("#item[data-item]").wait_for(timeout=300)
        except TimeoutError:
            continue
        shown = page.locator("#item").get_attribute("data-item")
        if shown is None:
            continue
        answer = [1, 0, -1][n_shown % 3]
        if n_shown % 2:
            page.keyboard.press(str(answer + 1) if answer >= 0 else "0")
        else:
            page.click(f'#answers button[data-answer="{answer}"]')
        given[shown] = answer
        n_shown += 1
        _wait_for_change(page, shown)
        if not undone and n_shown == 2:
            # Undo by keyboard: the same item comes back, answered anew.
            progress = page.locator("#progress-text").text_content()
            page.keyboard.press("Backspace")
            expect(page.locator("#item")).to_have_attribute("data-item", shown)
            assert page.locator("#progress-text").text_content() != progress
            page.click('#answers button[data-answer="0"]')
            given[shown] = 0
            undone = True
            _wait_for_change(page, shown)
    worker.join()
    teacher.close()
    if "error" in outcome:
        raise outcome["error"]

    clf = outcome["clf"]
    cf = clf.counterfactuals_
    asked = cf["reason"] != "not_flipped"
    received = {}
    for image, source, label in zip(
        cf["counterfactual"][asked],
        cf["source"][asked],
        cf["teacher_label"][asked],
        strict=True,
    ):
        received[item_id(image, source)] = -1 if label is None else int(label)
    assert undone and len(given) >= 4
    assert received == given
    assert (cf["reason"][asked] == "out_of_distribution").sum() == sum(
        a == -1 for a in given.values()
    )
    assert (
        [m for m in messages if " at " in m][0]
        .split(" at ")[1]
        .startswith("http://127.0.0.1:")
    )


def test_page_shows_original_counterfactual_and_difference(page, tmp_path):
    from playwright.sync_api import expect

    X = make_bars(n_minority=2, imbalance_ratio=1, random_state=0)[0][:2]
    counterfactuals = X.copy()
    counterfactuals[:, 0] += 0.5
    messages = []
    teacher = HumanTeacher(
        ["healthy", "tumour"],
        tmp_path,
        class_names=["healthy tissue", "tumour"],
        display_size=200,
        sink=messages.append,
    )
    result = {}
    worker = _call_in_thread(teacher, counterfactuals, X, result)
    while not messages:
        worker.join(0.05)
    page.goto(messages[0].split(" at ")[1])
    page.locator("#item[data-item]").wait_for()

    for kind in ("original", "counterfactual", "difference"):
        image = page.locator(f"#{kind}")
        expect(image).to_be_visible()
        # Loaded and enlarged: 8x8 images at a whole factor of 200 pixels.
        page.wait_for_load_state("networkidle")
        assert image.evaluate("element => element.naturalWidth") == 200
    expect(page.locator("#answers button")).to_have_text(
        [
            re.compile("^healthy tissue"),
            re.compile("^tumour"),
            re.compile("^Cannot tell"),
        ]
    )
    expect(page.locator("#progress-text")).to_have_text("0 of 2 answered")
    page.keyboard.press("2")
    expect(page.locator("#progress-text")).to_have_text("1 of 2 answered")
    page.click("#stop")
    expect(page.locator("#message-title")).to_have_text("Stopped")
    worker.join(10)
    assert isinstance(result.pop("error"), AnnotationIncomplete)
    teacher.close()

    # Continued later: only the unanswered item is shown.
    teacher = HumanTeacher(
        ["healthy", "tumour"], tmp_path, class_names=["healthy tissue", "tumour"]
    )
    teacher.sink = messages.append
    worker = _call_in_thread(teacher, counterfactuals, X, result)
    while len(messages) < 2:
        worker.join(0.05)
    page.goto(messages[-1].split(" at ")[1])
    expect(page.locator("#progress-text")).to_have_text("0 of 1 answered")
    page.click('#answers button[data-answer="-1"]')
    worker.join(10)
    teacher.close()
    np.testing.assert_array_equal(result["labels"], ["tumour", OUT_OF_DISTRIBUTION])


def test_annotation_benchmark_plays_the_expert(browser, tmp_path):
    screenshot = tmp_path / "page.png"
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).parents[1] / "benchmarks" / "annotation.py"),
            "--quick",
            "--screenshot",
            str(screenshot),
            "--chromium",
            _chromium(),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answered = int(re.search(r"answered in the browser: (\d+)", result.stdout)[1])
    # 8 training and 2 validation counterfactuals; a repeated one is asked once.
    assert 2 <= answered <= 10
    assert re.search(r"median \d+ ms, 95th percentile \d+ ms", result.stdout)
    assert screenshot.read_bytes().startswith(b"\x89PNG")
