"""The annotation page as an expert meets it: a screenshot, and time per item.

Runs CFKD on the demo's confounded digits with a :class:`imbcfkd.HumanTeacher`
and plays the expert in headless Chromium: every item is answered with one
key press, the label an oracle (trained on well-conditioned digits) gives the
counterfactual. It measures what the page adds to each answer (from the key
press until the next item's three images are on screen), the whole fit, and
writes a screenshot of the first item.

A person's own time per item (looking, deciding) cannot be measured by a
script; add it to the page's time printed here.

Needs Chromium (``apt-get install chromium``) and Playwright (``pip install
playwright``; no browser download is needed)::

    python benchmarks/annotation.py
    python benchmarks/annotation.py --quick --screenshot /tmp/page.png
"""

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from imbcfkd import CFKDClassifier, HumanTeacher, make_net
from imbcfkd.annotation import AnnotationFolder
from imbcfkd.datasets import make_confounded_digits

CLASS_NAMES = ["other digit (1, 2, 4, 5, 7)", "round digit (0, 3, 6, 8, 9)"]


def main(argv=None):
    args = _parse(argv)
    executable = args.chromium or shutil.which("chromium")
    if executable is None:
        raise SystemExit(
            "Chromium was not found: install Debian's chromium package, or give "
            "its path with --chromium."
        )
    from playwright.sync_api import sync_playwright

    data = make_confounded_digits(100, 10, random_state=args.random_state)
    epochs = 3 if args.quick else 15
    oracle = CFKDClassifier(
        net=make_net(max_epochs=epochs), n_counterfactuals=0, random_state=0
    ).fit(data.oracle.X, data.oracle.y)

    folder = Path(tempfile.mkdtemp(prefix="imbcfkd-annotation-"))
    messages = []
    teacher = HumanTeacher(
        [0, 1],
        folder,
        class_names=CLASS_NAMES,
        display_size=args.display_size,
        sink=messages.append,
    )
    clf = CFKDClassifier(
        teacher=teacher,
        net=make_net(max_epochs=epochs),
        n_counterfactuals=args.n_counterfactuals,
        n_rounds=args.n_rounds,
        teacher_checks_sources=False,
        random_state=args.random_state,
    )
    outcome = {}
    started = time.perf_counter()
    worker = threading.Thread(
        target=_fit, args=(clf, data.train.X, data.train.y, outcome), daemon=True
    )
    worker.start()

    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        page = browser.new_page(viewport={"width": 1000, "height": 680})
        while not messages and worker.is_alive():
            worker.join(0.05)
        if not messages:
            raise SystemExit(f"The fit ended before asking anything: {outcome}")
        page.goto(messages[0].split(" at ")[1])
        store = AnnotationFolder(folder)
        while worker.is_alive():
            shown = _shown_item(page)
            if shown is None:
                continue
            _wait_for_images(page)
            if not seconds and args.screenshot:
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.screenshot))
            image, _ = store.load_item(shown)
            answer = int(oracle.predict(image[None])[0])
            pressed = time.perf_counter()
            page.keyboard.press(str(answer + 1))
            page.locator(
                f'#item[data-item]:not([data-item="{shown}"]), #message:not([hidden])'
            ).first.wait_for()
            if page.locator("#item[data-item]").count():
                _wait_for_images(page)
                seconds.append(time.perf_counter() - pressed)
        browser.close()
    worker.join()
    teacher.close()
    if "error" in outcome:
        raise outcome["error"]
    total = time.perf_counter() - started

    milliseconds = 1000 * np.array(seconds)
    print(f"Items answered in the browser: {len(AnnotationFolder(folder).answers)}")
    print(
        "Page time per item (key press to the next item's images on screen): "
        f"median {np.median(milliseconds):.0f} ms, 95th percentile "
        f"{np.percentile(milliseconds, 95):.0f} ms, over {len(milliseconds)} items"
    )
    print(f"Whole fit with the page: {total:.1f} s")
    history = outcome["clf"].history_
    print(
        "Feedback accuracy per round (share of true counterfactuals): "
        + ", ".join(f"{entry['feedback_accuracy']:.2f}" for entry in history)
    )
    if args.screenshot:
        print(f"Screenshot of the first item: {args.screenshot}")
    shutil.rmtree(folder, ignore_errors=True)


def _fit(clf, X, y, outcome):
    try:
        outcome["clf"] = clf.fit(X, y)
    except BaseException as error:  # reported by the main thread
        outcome["error"] = error


def _shown_item(page):
    from playwright.sync_api import TimeoutError

    try:
        page.locator("#item[data-item]").wait_for(timeout=300)
    except TimeoutError:
        return None
    return page.locator("#item").get_attribute("data-item")


def _wait_for_images(page):
    for name in ("original", "counterfactual", "difference"):
        image = page.locator(f"#{name}")
        while not image.evaluate("e => e.hidden || (e.complete && e.naturalWidth > 0)"):
            time.sleep(0.005)


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n-counterfactuals",
        type=int,
        default=40,
        help="counterfactuals per round (default 40)",
    )
    parser.add_argument("--n-rounds", type=int, default=2, help="rounds (default 2)")
    parser.add_argument(
        "--display-size",
        type=int,
        default=256,
        help="screen pixels per image side (default 256)",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        default=Path("docs/figures/annotation-page.png"),
        help="where to write the screenshot (default docs/figures/annotation-page.png)",
    )
    parser.add_argument("--chromium", help="path of the Chromium executable")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="tiny run: 8 counterfactuals, 1 round"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_counterfactuals, args.n_rounds = 8, 1
    return args


if __name__ == "__main__":
    main()
