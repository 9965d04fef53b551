"""The human teacher's page, spoken to over HTTP, and its record of answers."""

import copy
import csv
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import make_bars, tiny_cfkd
from sklearn.base import clone

from imbcfkd import OUT_OF_DISTRIBUTION, AnnotationIncomplete, HumanTeacher
from imbcfkd.annotation import (
    AnnotationFolder,
    export_annotations,
    import_annotations,
    item_id,
    main,
)


class Expert:
    """Runs ``function`` (which calls a HumanTeacher) in a thread, and talks
    to the page it serves as a browser would."""

    def __init__(self, teacher, function):
        self.messages = []
        teacher.sink = self.messages.append
        self.result = {}
        self.thread = threading.Thread(target=self._run, args=(function,), daemon=True)
        self.thread.start()

    def _run(self, function):
        try:
            self.result["value"] = function()
        except BaseException as error:  # handed to the test
            self.result["error"] = error

    @property
    def url(self):
        deadline = time.monotonic() + 60
        while not any(" at http" in m for m in self.messages):
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError(f"no page was served: {self.result}")
            time.sleep(0.02)
        return next(m for m in self.messages if " at http" in m).split(" at ")[1]

    @property
    def root(self):
        return self.url.split("/?token=")[0]

    @property
    def token(self):
        return self.url.split("/?token=")[1]

    def request(self, path, body=None, token=True, headers=None):
        """Status and body of a request; the token is added unless told not to."""
        if token:
            path += ("&" if "?" in path else "?") + f"token={self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.root + path,
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def state(self):
        status, body = self.request("/state")
        assert status == 200
        return json.loads(body)

    def next_item(self):
        """The state once an item is shown, or None when the call is over."""
        while self.thread.is_alive():
            state = self.state()
            if state["item"] is not None:
                return state
            time.sleep(0.02)
        return None

    def answer(self, answer):
        state = self.next_item()
        status, body = self.request(
            "/answer", {"item": state["item"]["id"], "answer": answer}
        )
        assert status == 200
        return json.loads(body)

    def result_value(self):
        self.thread.join(60)
        assert not self.thread.is_alive(), "the call did not return"
        if "error" in self.result:
            raise self.result["error"]
        return self.result["value"]


@pytest.fixture
def images():
    """Three images and their counterfactuals: a colour cast added."""
    X = make_bars(n_minority=3, imbalance_ratio=1, random_state=0)[0][:3]
    counterfactuals = X.copy()
    counterfactuals[:, 0] += 0.5
    return X, counterfactuals


def teacher_for(folder, **params):
    return HumanTeacher(
        [0, 1], folder, class_names=["vertical", "horizontal"], **params
    )


def test_answers_come_back_as_labels_and_are_recorded(images, tmp_path):
    X, counterfactuals = images
    teacher = teacher_for(tmp_path)
    expert = Expert(teacher, lambda: teacher(counterfactuals, originals=X))
    first = expert.next_item()
    assert first["total"] == 3 and first["answered"] == 0
    assert first["item"]["has_original"]
    assert first["item"]["largest_change"] == pytest.approx(0.5)
    for answer in (1, -1, 0):
        expert.answer(answer)

    labels = expert.result_value()
    assert labels.tolist() == [1, OUT_OF_DISTRIBUTION, 0]
    lines = (tmp_path / "answers.jsonl").read_text().splitlines()
    assert [json.loads(line)["answer"] for line in lines] == [
        1,
        {"cannot_tell": True},
        0,
    ]
    teacher.close()


def test_every_request_needs_the_token(images, tmp_path):
    X, counterfactuals = images
    teacher = teacher_for(tmp_path)
    expert = Expert(teacher, lambda: teacher(counterfactuals, originals=X))
    item = expert.next_item()["item"]["id"]
    for path in ("/", "/state", "/image?item=0&kind=original"):
        assert expert.request(path, token=False)[0] == 403
        assert expert.request(path + "?token=wrong", token=False)[0] == 403
    assert expert.request("/answer", {"item": item, "answer": 1}, token=False)[0] == 403
    assert expert.request("/stop", {}, token=False)[0] == 403
    assert expert.state()["answered"] == 0
    assert not (tmp_path / "answers.jsonl").exists()
    # A page reached under a foreign host name (DNS rebinding) is refused too.
    assert expert.request("/state", headers={"Host": "attacker.example"})[0] == 403
    expert.request("/stop", {})
    with pytest.raises(AnnotationIncomplete):
        expert.result_value()
    teacher.close()


def test_no_request_reaches_the_file_system(images, tmp_path, monkeypatch):
    X, counterfactuals = images
    secret = "do not serve this"
    (tmp_path / "secret.txt").write_text(secret)
    monkeypatch.chdir(tmp_path)
    teacher = teacher_for(tmp_path / "annotation")
    expert = Expert(teacher, lambda: teacher(counterfactuals, originals=X))
    item = expert.next_item()["item"]["id"]
    for path in (
        "/secret.txt",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "//etc/passwd",
        "/answers.jsonl",
        f"/items/{item}.npz",
        "/image?item=../../secret.txt&kind=original",
        "/image?item=0&kind=../../secret.txt",
        "/image?item=-1&kind=original",
        "/image?item=99&kind=original",
    ):
        status, body = expert.request(path)
        assert status == 404, path
        assert secret.encode() not in body and b"root:" not in body
    status, body = expert.request("/image?item=0&kind=difference")
    assert status == 200 and body.startswith(b"\x89PNG")
    assert expert.request("/answer", {"item": item, "answer": 7})[0] == 400
    assert expert.request("/answer", {"item": item, "answer": "1"})[0] == 400
    expert.request("/stop", {})
    with pytest.raises(AnnotationIncomplete):
        expert.result_value()
    teacher.close()


def test_undo_withdraws_the_last_answer(images, tmp_path):
    X, counterfactuals = images
    teacher = teacher_for(tmp_path)
    expert = Expert(teacher, lambda: teacher(counterfactuals, originals=X))
    expert.answer(1)
    state = expert.answer(1)
    assert state["answered"] == 2 and state["can_undo"]
    status, body = expert.request("/undo", {})
    assert status == 200 and json.loads(body)["answered"] == 1
    # The undone item is shown again, and takes the new answer.
    assert expert.next_item()["item"]["position"] == 1
    expert.answer(0)
    expert.answer(0)
    assert expert.result_value().tolist() == [1, 0, 0]
    entries = [
        json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().split("\n") if x
    ]
    assert [e.get("undo", False) for e in entries] == [False, False, True, False, False]
    assert AnnotationFolder(tmp_path).answers == {
        item_id(c, o): a for c, o, a in zip(counterfactuals, X, [1, 0, 0], strict=True)
    }
    teacher.close()


def test_stop_keeps_answers_and_a_later_call_asks_only_the_rest(images, tmp_path):
    X, counterfactuals = images
    teacher = teacher_for(tmp_path)
    expert = Expert(teacher, lambda: teacher(counterfactuals, originals=X))
    expert.answer(1)
    expert.request("/stop", {})
    with pytest.raises(AnnotationIncomplete, match="1 of 3") as stopped:
        expert.result_value()
    assert stopped.value.n_pending == 2
    teacher.close()

    # A new process: a new teacher on the same folder.
    teacher = teacher_for(tmp_path)
    expert = Expert(teacher, lambda: teacher(counterfactuals, originals=X))
    assert expert.next_item()["total"] == 2
    expert.answer(0)
    expert.answer(1)
    assert expert.result_value().tolist() == [1, 0, 1]
    assert len((tmp_path / "answers.jsonl").read_text().splitlines()) == 3
    teacher.close()


def test_the_page_stays_at_one_address_between_calls(images, tmp_path):
    X, counterfactuals = images
    teacher = teacher_for(tmp_path)

    def two_calls():
        return teacher(counterfactuals[:1], originals=X[:1]), teacher(X[1:])

    expert = Expert(teacher, two_calls)
    address = expert.url
    expert.answer(0)
    state = expert.next_item()
    assert not state["item"]["has_original"]  # the second call: images alone
    expert.answer(1)
    expert.answer(-1)
    first, second = expert.result_value()
    assert first.tolist() == [0] and second.tolist() == [1, OUT_OF_DISTRIBUTION]
    assert [m.split(" at ")[1] for m in expert.messages if " at " in m] == [address] * 2
    assert expert.state()["waiting"]
    teacher.close()


def test_a_torn_last_line_is_skipped(images, tmp_path):
    X, counterfactuals = images
    teacher = teacher_for(tmp_path, serve=False)
    with pytest.raises(AnnotationIncomplete):
        teacher(counterfactuals, originals=X)
    store = AnnotationFolder(tmp_path)
    store.record(store.items[0], 1, via="test")
    with open(tmp_path / "answers.jsonl", "a") as handle:
        handle.write('{"item": "' + store.items[1])  # a crash mid-write
    assert AnnotationFolder(tmp_path).answers == {store.items[0]: 1}


def test_export_and_import_round_trip(images, tmp_path, capsys):
    X, counterfactuals = images
    folder = tmp_path / "annotation"
    teacher = teacher_for(folder, serve=False)
    with pytest.raises(AnnotationIncomplete, match="3 of 3 images await") as waiting:
        teacher(counterfactuals, originals=X)
    assert waiting.value.n_pending == 3

    main(["export", str(folder), str(tmp_path / "out")])
    assert "answers.csv" in capsys.readouterr().out
    with open(tmp_path / "out" / "answers.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and all(row["answer"] == "" for row in rows)
    for row in rows:
        for kind in ("original", "counterfactual", "difference"):
            assert (tmp_path / "out" / row[kind]).read_bytes().startswith(b"\x89PNG")

    # Another tool fills in the answers: a class name, a label, cannot tell.
    for row, answer in zip(rows, ["horizontal", "0", "cannot tell"], strict=True):
        row["answer"] = answer
    with open(tmp_path / "filled.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    main(["import", str(folder), str(tmp_path / "filled.csv")])
    assert "Imported 3 answers" in capsys.readouterr().out

    assert teacher(counterfactuals, originals=X).tolist() == [1, 0, OUT_OF_DISTRIBUTION]
    export_annotations(folder, tmp_path / "again")
    with open(tmp_path / "again" / "answers.csv", newline="") as handle:
        answers = [row["answer"] for row in csv.DictReader(handle)]
    assert answers == ["horizontal", "vertical", "cannot tell"]


def test_import_refuses_unknown_items_and_answers(images, tmp_path):
    X, counterfactuals = images
    teacher = teacher_for(tmp_path, serve=False)
    with pytest.raises(AnnotationIncomplete):
        teacher(counterfactuals, originals=X)
    item = AnnotationFolder(tmp_path).items[0]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"item,answer\n{item},diagonal\n")
    with pytest.raises(ValueError, match="line 2: unknown answer 'diagonal'"):
        import_annotations(tmp_path, bad)
    bad.write_text("item,answer\nabc,horizontal\n")
    with pytest.raises(ValueError, match="item 'abc' is not in"):
        import_annotations(tmp_path, bad)
    assert AnnotationFolder(tmp_path).answers == {}


def test_bad_settings_and_images_are_refused(images, tmp_path):
    X, counterfactuals = images
    with pytest.raises(ValueError, match="2 names for 3 classes"):
        HumanTeacher([0, 1, 2], tmp_path, class_names=["a", "b"])(X)
    with pytest.raises(ValueError, match="Pass image_shape"):
        teacher_for(tmp_path)(X.reshape(len(X), -1))
    with pytest.raises(ValueError, match="shape of X"):
        teacher_for(tmp_path)(X, originals=X[:2])
    with pytest.raises(AnnotationIncomplete):
        teacher_for(tmp_path, serve=False, image_shape=X.shape[1:])(
            X.reshape(len(X), -1)
        )
    with pytest.raises(ValueError, match="made for the classes"):
        HumanTeacher(["a", "b"], tmp_path)(X)


def test_copies_carry_parameters_not_the_live_page(images, tmp_path):
    X, counterfactuals = images
    teacher = teacher_for(tmp_path)
    expert = Expert(teacher, lambda: teacher(X[:1]))
    expert.answer(1)
    expert.result_value()
    assert teacher._server is not None
    copied = copy.deepcopy(teacher)
    assert not hasattr(copied, "_server") and copied.folder == teacher.folder
    clf = clone(tiny_cfkd(teacher=teacher))
    assert clf.teacher.class_names == ["vertical", "horizontal"]
    teacher.close()
    assert not hasattr(teacher, "_server")


def test_cfkd_with_a_human_teacher_stops_and_resumes(tmp_path):
    X, y, _ = make_bars(n_minority=20, imbalance_ratio=2, random_state=0)
    params = dict(
        n_counterfactuals=6,
        validation_fraction=None,
        teacher_checks_sources=False,
        work_dir=tmp_path / "run",
    )

    def rule(item):
        return 0 if item["position"] % 2 else 1

    teacher = teacher_for(tmp_path / "annotation")
    expert = Expert(teacher, lambda: tiny_cfkd(teacher=teacher, **params).fit(X, y))
    state = expert.next_item()
    total = state["total"]
    expert.answer(rule(state["item"]))
    expert.request("/stop", {})
    with pytest.raises(AnnotationIncomplete):
        expert.result_value()
    teacher.close()

    teacher = teacher_for(tmp_path / "annotation")
    expert = Expert(teacher, lambda: tiny_cfkd(teacher=teacher, **params).fit(X, y))
    shown = 0
    while (state := expert.next_item()) is not None:
        assert state["total"] == total - 1
        expert.answer(rule(state["item"]))
        shown += 1
    clf = expert.result_value()
    teacher.close()

    assert shown == total - 1
    counterfactuals = clf.counterfactuals_
    asked = counterfactuals["reason"] != "not_flipped"
    assert asked.sum() >= total
    folder = AnnotationFolder(tmp_path / "annotation")
    for image, original, label in zip(
        counterfactuals["counterfactual"][asked],
        counterfactuals["source"][asked],
        counterfactuals["teacher_label"][asked],
        strict=True,
    ):
        assert folder.answers[item_id(image, original)] == label


FIT_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import make_bars, tiny_cfkd
from imbcfkd import HumanTeacher
X, y, _ = make_bars(n_minority=20, imbalance_ratio=2, random_state=0)
teacher = HumanTeacher([0, 1], {folder!r}, sink=lambda m: print(m, flush=True))
clf = tiny_cfkd(
    teacher=teacher, n_counterfactuals=6, validation_fraction=None,
    teacher_checks_sources=False, work_dir={work_dir!r},
).fit(X, y)
print("labels", clf.counterfactuals_["teacher_label"].tolist(), flush=True)
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_a_killed_process_loses_no_answer(tmp_path, signal_name):
    script = tmp_path / "fit.py"
    script.write_text(
        FIT_SCRIPT.format(
            tests=str(Path(__file__).parent),
            folder=str(tmp_path / "annotation"),
            work_dir=str(tmp_path / "run"),
        )
    )

    def start():
        return subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def page_of(process):
        line = process.stdout.readline()
        assert " at http" in line, process.stderr.read()[-2000:]
        root, token = line.split(" at ")[1].strip().split("/?token=")
        return root, token

    def call(root, token, path, body=None):
        request = urllib.request.Request(
            f"{root}{path}?token={token}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    process = start()
    root, token = page_of(process)
    given = {}
    for answer in (1, 0):
        state = call(root, token, "/state")
        given[state["item"]["id"]] = answer
        call(root, token, "/answer", {"item": state["item"]["id"], "answer": answer})
    total = state["total"]
    process.send_signal(getattr(signal, signal_name))
    process.wait(30)
    assert process.returncode != 0
    assert AnnotationFolder(tmp_path / "annotation").answers == given

    process = start()
    root, token = page_of(process)
    state = call(root, token, "/state")
    assert state["total"] == total - 2  # only what was not answered
    while state["item"] is not None:
        given[state["item"]["id"]] = 1
        state = call(root, token, "/answer", {"item": state["item"]["id"], "answer": 1})
    output, errors = process.communicate(timeout=120)
    assert process.returncode == 0, errors[-2000:]
    assert AnnotationFolder(tmp_path / "annotation").answers == given
    assert "labels" in output
