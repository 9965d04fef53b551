"""The human teacher: a local web page on which a domain expert labels images.

:class:`HumanTeacher` is a teacher for :class:`~imbcfkd.CFKDClassifier`. When
CFKD asks it for the true class of some counterfactuals, it serves a page on
the loopback interface, prints its address, and waits until the expert has
answered every item. Each item shows the original image, the counterfactual
and where they differ, enlarged; the expert answers with one click or one key
(the counterfactual's true class, or "cannot tell"), can undo the last answer,
and can stop and continue later.

Every answer is appended to ``answers.jsonl`` in the annotation folder the
moment it is given, and an item answered once is never shown again, in this
run or a later one. :func:`export_annotations` writes the items as PNG images
with a CSV to fill in, for annotation in another tool, and
:func:`import_annotations` reads the filled CSV back. Both are also commands::

    python -m imbcfkd.annotation export ANNOTATION_FOLDER OUTPUT_FOLDER
    python -m imbcfkd.annotation import ANNOTATION_FOLDER ANSWERS_CSV

The page serves nothing but its own items: every request must carry the
random token printed with the address, and no part of a request is ever
used as a path on disk.
"""

import argparse
import csv
import hashlib
import io
import json
import os
import secrets
import sys
import threading
import time
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ._serialization import atomic_write
from .exceptions import AnnotationIncomplete
from .teachers import OUT_OF_DISTRIBUTION

__all__ = ["HumanTeacher", "export_annotations", "import_annotations"]

ANSWERS_FILE = "answers.jsonl"
ITEMS_FILE = "items.jsonl"
SETTINGS_FILE = "annotation.json"
ITEMS_FOLDER = "items"
CANNOT_TELL = "cannot tell"
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
_EXPORT_SIZE = 256
_PAGE_FILE = "annotation_page.html"


class HumanTeacher:
    """A teacher that asks a person, on a local web page.

    Called by CFKD with a batch of images, it shows every image not answered
    before on a page served at ``http://host:port/?token=...``, sends the
    address to ``sink``, and returns once each has an answer. Called with
    ``originals`` (as CFKD does for counterfactuals), each item shows the
    original, the counterfactual and a heat map of their difference;
    without, the image alone.

    The page is served from the first call on, at one address, until
    :meth:`close` or the end of the process; between two calls it waits for
    the next images. Use the teacher as a context manager to close it.

    Parameters
    ----------
    classes : sequence
        The class labels, as in ``y`` (e.g. ``CFKDClassifier.classes_``).
        The answers returned are these labels, or
        :data:`imbcfkd.OUT_OF_DISTRIBUTION` for "cannot tell".
    folder : str or path-like
        The annotation folder: the append-only record of answers, the items
        shown, and the settings. Created when missing. Reusing it continues
        an earlier annotation; it must then have the same ``classes``.
    class_names : sequence of str, default=None
        What the page calls each class, in the order of ``classes``, e.g.
        ``["healthy tissue", "tumour"]``. ``None`` uses ``str(label)``.
    image_shape : tuple of int, default=None
        Shape ``(channels, height, width)`` of one image when the images
        come flattened. ``None`` takes them as ``(n, channels, height,
        width)``. One channel is shown grey, three as RGB; of other counts
        the first channel is shown.
    value_range : tuple of float, default=None
        The pixel values shown as black and white. ``None`` stretches each
        item's original and counterfactual together over their joint range,
        so that the two stay comparable.
    display_size : int, default=256
        Length in screen pixels of the longer side of each image on the page.
        Smaller images are enlarged by a whole factor, without smoothing;
        larger ones are shown scaled down.
    host : str, default="127.0.0.1"
        Interface to serve on. Keep the loopback address unless the expert
        works on another machine, and then prefer an SSH tunnel.
    port : int, default=0
        Port to serve on; 0 picks a free one.
    serve : bool, default=True
        Serve the page. ``False`` never serves: unanswered items raise
        :class:`~imbcfkd.exceptions.AnnotationIncomplete` at once, to be
        exported with :func:`export_annotations`, answered in another tool
        and imported with :func:`import_annotations`.
    open_browser : bool, default=False
        Also open the page in the default web browser.
    sink : callable, default=print
        Receives the page's address (with its token) and the progress
        messages. Pass a function that stores the address to open the page
        from code.

    Raises
    ------
    AnnotationIncomplete
        From a call, when the expert pressed "Stop for now" (or, with
        ``serve=False``, when items await an answer). The answers given so
        far are on disk; with a ``work_dir`` on the CFKD classifier, fitting
        again continues where the expert stopped.

    See Also
    --------
    imbcfkd.OracleTeacher : A teacher that asks a fitted classifier.
    export_annotations : Items and answers as PNG images and a CSV.

    Notes
    -----
    Keys on the page: ``1`` to ``9`` answer the first nine classes, ``0`` is
    "cannot tell", Backspace (or ``u``) undoes the last answer.

    In a notebook the call blocks the cell until the expert is done, while
    the page is served from a background thread; interrupting the kernel
    stops the page and keeps the answers given.

    Examples
    --------
    >>> from imbcfkd import CFKDClassifier, HumanTeacher  # doctest: +SKIP
    >>> teacher = HumanTeacher(
    ...     classes=[0, 1], folder="run/annotation",
    ...     class_names=["no tumour", "tumour"],
    ... )  # doctest: +SKIP
    >>> CFKDClassifier(
    ...     teacher=teacher, work_dir="run", teacher_checks_sources=False
    ... ).fit(X, y)  # doctest: +SKIP
    Label 250 images at http://127.0.0.1:40313/?token=...
    """

    def __init__(
        self,
        classes,
        folder,
        *,
        class_names=None,
        image_shape=None,
        value_range=None,
        display_size=256,
        host="127.0.0.1",
        port=0,
        serve=True,
        open_browser=False,
        sink=print,
    ):
        self.classes = classes
        self.folder = folder
        self.class_names = class_names
        self.image_shape = image_shape
        self.value_range = value_range
        self.display_size = display_size
        self.host = host
        self.port = port
        self.serve = serve
        self.open_browser = open_browser
        self.sink = sink

    def __call__(self, X, originals=None):
        """Labels for the images ``X``, asked of the expert where not known.

        Parameters
        ----------
        X : array-like of shape (n_images, channels, height, width)
            The images to label (flattened images with ``image_shape``).
        originals : array-like of the shape of ``X``, default=None
            The image each of ``X`` was made from, shown beside it.

        Returns
        -------
        labels : ndarray of object, shape (n_images,)
            A label of ``classes`` per image, or
            :data:`imbcfkd.OUT_OF_DISTRIBUTION` where the expert could not
            tell.
        """
        X = self._images(X, "X")
        if originals is not None:
            originals = self._images(originals, "originals")
            if originals.shape != X.shape:
                raise ValueError(
                    f"originals must have the shape of X, {X.shape}; got "
                    f"{originals.shape}."
                )
        store = AnnotationFolder(self.folder, self._settings())
        ids = [
            item_id(image, None if originals is None else originals[i])
            for i, image in enumerate(X)
        ]
        for i, identifier in enumerate(ids):
            store.add_item(
                identifier, X[i], None if originals is None else originals[i]
            )
        pending = list(dict.fromkeys(i for i in ids if i not in store.answers))
        if pending and not self.serve:
            raise AnnotationIncomplete(
                f"{len(pending)} of {len(set(ids))} images await an answer and "
                f"serve=False. Run `python -m imbcfkd.annotation export "
                f"{self.folder} OUTPUT_FOLDER`, fill in the answer column of the "
                "CSV, run `python -m imbcfkd.annotation import "
                f"{self.folder} CSV`, then fit again with the same work_dir.",
                n_pending=len(pending),
            )
        if pending:
            self._ask(store, pending)
        return np.array([store.label(store.answers[i]) for i in ids], dtype=object)

    def close(self):
        """Stop serving the page. A later call serves it again."""
        server = self.__dict__.pop("_server", None)
        self.__dict__.pop("_session", None)
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __getstate__(self):
        # Copies (scikit-learn's clone deep-copies a teacher) and pickles
        # carry the parameters, never the live page.
        state = self.__dict__.copy()
        state.pop("_server", None)
        state.pop("_session", None)
        return state

    def _ask(self, store, pending):
        """Show ``pending`` items on the page until all are answered."""
        first = getattr(self, "_session", None) is None
        if first:
            self._session = _Session(self)
            self._server = _Server((self.host, self.port), _handler(self._session))
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        session = self._session
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"http://{host}:{self._server.server_port}/?token={session.token}"
        session.begin(store, pending)
        self.sink(f"{len(pending)} images to label at {url}")
        if self.open_browser and first:
            webbrowser.open(url)
        try:
            while not session.finished.wait(0.1):
                pass
        finally:
            stopped = session.end()
        answered = sum(i in store.answers for i in pending)
        if stopped:
            raise AnnotationIncomplete(
                f"Annotation stopped with {answered} of {len(pending)} images "
                f"answered; the answers are saved in {store.path}. Fit again "
                "with the same work_dir (and this folder) to continue.",
                n_pending=len(pending) - answered,
            )
        self.sink(f"All {len(pending)} images answered.")

    def _images(self, X, name):
        X = np.asarray(X, dtype=np.float32)
        if self.image_shape is not None:
            X = X.reshape((len(X),) + tuple(int(s) for s in self.image_shape))
        if X.ndim != 4:
            raise ValueError(
                f"HumanTeacher shows images of shape (n, channels, height, "
                f"width); {name} has shape {X.shape}. Pass image_shape for "
                "flattened images."
            )
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{name} holds NaN or infinite values.")
        return X

    def _settings(self):
        classes = [_plain(label) for label in self.classes]
        if len(classes) < 2:
            raise ValueError(f"classes must hold at least two labels; got {classes}.")
        names = self.class_names
        names = [str(c) for c in classes] if names is None else [str(n) for n in names]
        if len(names) != len(classes):
            raise ValueError(
                f"class_names has {len(names)} names for {len(classes)} classes."
            )
        if len(set(names)) != len(names) or CANNOT_TELL in names:
            raise ValueError(
                f"class_names must be distinct and differ from {CANNOT_TELL!r}; "
                f"got {names}."
            )
        return {"classes": classes, "class_names": names}


def item_id(image, original=None):
    """The name of an item: a hash of its image and, if any, its original."""
    digest = hashlib.sha256()
    for part in (image, original):
        if part is not None:
            part = np.ascontiguousarray(part, dtype=np.float32)
            digest.update(str(part.shape).encode("ascii"))
            digest.update(part.tobytes())
        else:
            digest.update(b"none")
    return digest.hexdigest()[:24]


def export_annotations(folder, output):
    """Write the items of an annotation folder as PNG images and a CSV.

    Parameters
    ----------
    folder : str or path-like
        An annotation folder of a :class:`HumanTeacher`.
    output : str or path-like
        Folder to write to: ``answers.csv`` and one ``ITEM-original.png``,
        ``ITEM-counterfactual.png`` and ``ITEM-difference.png`` per item (the
        image alone as ``ITEM-image.png`` for items without an original).

    Returns
    -------
    csv_path : pathlib.Path
        The CSV, with the columns ``item``, ``original``, ``counterfactual``,
        ``difference`` (file names) and ``answer``: a class name, ``cannot
        tell``, or empty where no answer was given yet. Fill in the empty
        answers and give the file to :func:`import_annotations`.
    """
    store = AnnotationFolder(folder)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    for identifier in store.items:
        image, original = store.load_item(identifier)
        files = {"original": "", "counterfactual": "", "difference": ""}
        panels = _panels(image, original, None, _EXPORT_SIZE)
        for kind, png in panels.items():
            name = f"{identifier}-{kind}.png"
            (output / name).write_bytes(png)
            files["counterfactual" if kind == "image" else kind] = name
        answer = store.answers.get(identifier)
        rows.append(
            {
                "item": identifier,
                **files,
                "answer": "" if answer is None else store.answer_name(answer),
            }
        )
    csv_path = output / "answers.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, ["item", "original", "counterfactual", "difference", "answer"]
        )
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def import_annotations(folder, csv_path):
    """Add the answers of a filled-in CSV to an annotation folder.

    Parameters
    ----------
    folder : str or path-like
        The annotation folder the CSV was exported from.
    csv_path : str or path-like
        A CSV with the columns ``item`` and ``answer``, as written by
        :func:`export_annotations`. An answer is a class name, a class label,
        ``cannot tell`` or :data:`imbcfkd.OUT_OF_DISTRIBUTION`; rows with an
        empty answer are skipped.

    Returns
    -------
    n_imported : int
        Answers added to the record.
    """
    store = AnnotationFolder(folder)
    vocabulary = {name: i for i, name in enumerate(store.settings["class_names"])}
    vocabulary.update({str(c): i for i, c in enumerate(store.settings["classes"])})
    vocabulary.update({CANNOT_TELL: -1, OUT_OF_DISTRIBUTION: -1})
    answers = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"item", "answer"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {sorted(missing)}.")
        for line, row in enumerate(reader, start=2):
            answer = (row["answer"] or "").strip()
            if not answer:
                continue
            if row["item"] not in store.items:
                raise ValueError(
                    f"{csv_path}, line {line}: item {row['item']!r} is not in "
                    f"{folder}; import the CSV into the folder it came from."
                )
            if answer not in vocabulary:
                raise ValueError(
                    f"{csv_path}, line {line}: unknown answer {answer!r}; expected "
                    f"one of {sorted(vocabulary)}."
                )
            answers.append((row["item"], vocabulary[answer]))
    for identifier, answer in answers:
        store.record(identifier, answer, via="import")
    return len(answers)


class AnnotationFolder:
    """The files of an annotation: settings, items and the record of answers.

    ``answers.jsonl`` is append-only: an answer is a line, an undo is a line
    that withdraws the answer before it, and each line is flushed to disk
    before the page is told it was saved. Items are stored as ``.npz`` files
    named by their hash and read without pickle.
    """

    def __init__(self, path, settings=None):
        self.path = Path(path)
        settings_file = self.path / SETTINGS_FILE
        if settings is None:
            if not settings_file.exists():
                raise FileNotFoundError(
                    f"{self.path} is not an annotation folder (it has no "
                    f"{SETTINGS_FILE}); give the folder of a HumanTeacher."
                )
            settings = json.loads(settings_file.read_text(encoding="utf-8"))
        elif settings_file.exists():
            stored = json.loads(settings_file.read_text(encoding="utf-8"))
            if stored["classes"] != settings["classes"]:
                raise ValueError(
                    f"The annotation folder {self.path} was made for the classes "
                    f"{stored['classes']}, not {settings['classes']}. Use another "
                    "folder."
                )
            if stored != settings:
                _write_text(settings_file, json.dumps(settings, indent=1))
        else:
            (self.path / ITEMS_FOLDER).mkdir(parents=True, exist_ok=True)
            _write_text(settings_file, json.dumps(settings, indent=1))
        self.settings = settings
        self.items = [entry["item"] for entry in _read_lines(self.path / ITEMS_FILE)]
        self._known = set(self.items)
        self.answers = {}
        for entry in _read_lines(self.path / ANSWERS_FILE):
            if entry.get("undo"):
                self.answers.pop(entry.get("item"), None)
            elif "answer" in entry:
                self.answers[entry["item"]] = self._index(entry["answer"])

    def add_item(self, identifier, image, original):
        """Store an item's images, once."""
        if identifier in self._known:
            return
        arrays = {"image": image}
        if original is not None:
            arrays["original"] = original
        with atomic_write(self.path / ITEMS_FOLDER / f"{identifier}.npz") as handle:
            np.savez(handle, **arrays)
        _append_line(self.path / ITEMS_FILE, {"item": identifier})
        self.items.append(identifier)
        self._known.add(identifier)

    def load_item(self, identifier):
        """The image and the original (or None) of an item."""
        with np.load(
            self.path / ITEMS_FOLDER / f"{identifier}.npz", allow_pickle=False
        ) as arrays:
            original = arrays["original"] if "original" in arrays.files else None
            return arrays["image"], original

    def record(self, identifier, answer, via):
        """Append an answer (a class index, -1 for cannot tell) to the record."""
        entry = {"item": identifier, "answer": self.answer_value(answer)}
        _append_line(self.path / ANSWERS_FILE, {**entry, "via": via, **_now()})
        self.answers[identifier] = answer

    def undo(self, identifier):
        """Append the withdrawal of an item's answer to the record."""
        _append_line(
            self.path / ANSWERS_FILE, {"item": identifier, "undo": True, **_now()}
        )
        self.answers.pop(identifier, None)

    def label(self, answer):
        """The teacher label of an answer."""
        return OUT_OF_DISTRIBUTION if answer < 0 else self.settings["classes"][answer]

    def answer_name(self, answer):
        return CANNOT_TELL if answer < 0 else self.settings["class_names"][answer]

    def answer_value(self, answer):
        """How an answer is written in the record: the label itself."""
        return {"cannot_tell": True} if answer < 0 else self.label(answer)

    def _index(self, value):
        if isinstance(value, dict) and value.get("cannot_tell"):
            return -1
        try:
            return self.settings["classes"].index(value)
        except ValueError:
            raise ValueError(
                f"{self.path / ANSWERS_FILE} holds the answer {value!r}, which is "
                f"none of the classes {self.settings['classes']}."
            ) from None


class _Session:
    """What the page serves: the items of the current call, in order.

    Between two calls of the teacher the session is idle and the page waits.
    """

    def __init__(self, teacher):
        self.teacher = teacher
        self.token = secrets.token_urlsafe(24)
        self.lock = threading.Lock()
        self.store = None
        self.class_names = []
        self.items = []
        self.given = []
        self.stopped = False
        self.finished = threading.Event()
        self._panels = {}

    def begin(self, store, pending):
        with self.lock:
            self.store, self.items, self.given = store, list(pending), []
            self.class_names = store.settings["class_names"]
            self.stopped = False
            self._panels = {}
            self.finished.clear()

    def end(self):
        """Go idle; whether the expert stopped."""
        with self.lock:
            stopped = self.stopped
            self.store, self.items, self.given = None, [], []
            self.stopped = False
            return stopped

    def current(self):
        if self.store is None:
            return None
        return next((i for i in self.items if i not in self.store.answers), None)

    def state(self):
        current = self.current()
        item = None
        if current is not None:
            image, original = self.store.load_item(current)
            item = {
                "id": current,
                "position": self.items.index(current),
                "has_original": original is not None,
                "largest_change": (
                    None
                    if original is None
                    else float(np.max(np.abs(image - original)))
                ),
            }
        answered = 0
        if self.store is not None:
            answered = sum(i in self.store.answers for i in self.items)
        return {
            "total": len(self.items),
            "answered": answered,
            "item": item,
            "waiting": self.store is None,
            "can_undo": bool(self.given),
            "stopped": self.stopped,
        }

    def panel(self, position, kind):
        if self.store is None:
            return None
        identifier = self.items[position]
        if identifier not in self._panels:
            image, original = self.store.load_item(identifier)
            teacher = self.teacher
            self._panels[identifier] = _panels(
                image, original, teacher.value_range, teacher.display_size
            )
        return self._panels[identifier].get(kind)

    def answer(self, identifier, answer, via):
        if identifier != self.current():
            return False
        self.store.record(identifier, answer, via)
        self.given.append(identifier)
        if self.current() is None:
            self.finished.set()
        return True

    def undo(self):
        if not self.given:
            return False
        self.store.undo(self.given.pop())
        return True

    def stop(self):
        if self.store is None:
            return False
        self.stopped = True
        self.finished.set()
        return True


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A browser that drops a request (an image replaced before it loaded)
        # is no error; anything else is reported as usual.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(session):
    """A request handler class bound to ``session``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "imbcfkd"
        sys_version = ""

        def do_GET(self):
            if not self._allowed():
                return
            path, query = self._route()
            if path == "/":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", _page(session))
            elif path == "/state":
                with session.lock:
                    state = session.state()
                self._send_json(state)
            elif path == "/image":
                self._send_image(query)
            else:
                self._not_found()

        def do_POST(self):
            if not self._allowed():
                return
            path, _ = self._route()
            if path not in ("/answer", "/undo", "/stop"):
                self._not_found()
                return
            body = self._body()
            if body is None:
                return
            with session.lock:
                if path == "/answer":
                    accepted = self._answer(body)
                    if accepted is None:
                        return
                elif path == "/undo":
                    accepted = session.undo()
                else:
                    accepted = session.stop()
                state = session.state()
            self._send_json({**state, "accepted": accepted})

        def _answer(self, body):
            answer = body.get("answer")
            n_classes = len(session.class_names)
            if (
                not isinstance(answer, int)
                or isinstance(answer, bool)
                or not -1 <= answer < n_classes
            ):
                self._send(HTTPStatus.BAD_REQUEST, "text/plain", b"bad answer")
                return None
            via = "key" if body.get("via") == "key" else "click"
            return session.answer(str(body.get("item")), answer, via)

        def _send_image(self, query):
            try:
                position = int(query.get("item", [""])[0])
                kind = query.get("kind", [""])[0]
                with session.lock:
                    png = session.panel(position, kind) if position >= 0 else None
            except (ValueError, IndexError):
                png = None
            if png is None:
                self._not_found()
            else:
                self._send(HTTPStatus.OK, "image/png", png)

        def _route(self):
            parts = urlsplit(self.path)
            return parts.path, parse_qs(parts.query)

        def _allowed(self):
            """Refuse requests without the token or for a foreign host name."""
            _, query = self._route()
            token = query.get("token", [""])[0]
            if not secrets.compare_digest(token.encode(), session.token.encode()):
                self._send(HTTPStatus.FORBIDDEN, "text/plain", b"forbidden")
                return False
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            if session.teacher.host in _LOOPBACK_NAMES and host not in (
                _LOOPBACK_NAMES | {session.teacher.host}
            ):
                self._send(HTTPStatus.FORBIDDEN, "text/plain", b"forbidden")
                return False
            return True

        def _body(self):
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(min(length, 10_000)) or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self._send(HTTPStatus.BAD_REQUEST, "text/plain", b"bad request")
                return None
            return body

        def _not_found(self):
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

        def _send_json(self, value):
            self._send(
                HTTPStatus.OK, "application/json", json.dumps(value).encode("utf-8")
            )

        def _send(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'none'; img-src 'self'; connect-src 'self'; "
                "script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            )
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            # Requests are not logged: the library prints nothing by itself.
            pass

    return Handler


def _panels(image, original, value_range, display_size):
    """PNG bytes of what an item shows: original, counterfactual, difference."""
    if original is None:
        low, high = _range(image, image, value_range)
        return {"image": _png(_to_rgb(image, low, high), display_size)}
    low, high = _range(image, original, value_range)
    # Black is unchanged and white a change over the whole value range; the
    # square root keeps small edits visible.
    heat = np.sqrt(np.clip(np.abs(image - original).max(axis=0) / (high - low), 0, 1))
    heat_rgb = np.stack(
        [
            np.clip(3 * heat, 0, 1),
            np.clip(3 * heat - 1, 0, 1),
            np.clip(3 * heat - 2, 0, 1),
        ]
    )
    return {
        "original": _png(_to_rgb(original, low, high), display_size),
        "counterfactual": _png(_to_rgb(image, low, high), display_size),
        "difference": _png(heat_rgb, display_size),
    }


def _range(image, original, value_range):
    if value_range is not None:
        low, high = (float(v) for v in value_range)
    else:
        low = float(min(image.min(), original.min()))
        high = float(max(image.max(), original.max()))
    return low, (high if high > low else low + 1.0)


def _to_rgb(image, low, high):
    scaled = np.clip((image - low) / (high - low), 0, 1)
    if len(scaled) == 3:
        return scaled
    return np.repeat(scaled[:1], 3, axis=0)


def _png(rgb, display_size):
    """An RGB array in [0, 1] of shape (3, h, w) as PNG, enlarged by a whole factor."""
    from PIL import Image

    factor = max(1, int(display_size) // max(rgb.shape[1:]))
    pixels = np.round(rgb.transpose(1, 2, 0) * 255).astype(np.uint8)
    pixels = pixels.repeat(factor, axis=0).repeat(factor, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _page(session):
    """The annotation page, its script and style inline, filled in."""
    settings = {"token": session.token, "classes": session.class_names}
    template = resources.files(__package__).joinpath(_PAGE_FILE).read_text("utf-8")
    return (
        template.replace("__SETTINGS__", json.dumps(settings))
        .replace("__SIZE__", str(int(session.teacher.display_size)))
        .encode("utf-8")
    )


def _plain(label):
    """A label as a JSON value (NumPy scalars become Python ones)."""
    label = label.item() if hasattr(label, "item") else label
    if label is not None and not isinstance(label, bool | int | float | str):
        raise ValueError(
            f"HumanTeacher needs class labels that are numbers, strings or "
            f"booleans; got {label!r} of type {type(label).__name__}."
        )
    return label


def _now():
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _append_line(path, entry):
    """Append one JSON line and flush it to disk before returning."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_lines(path):
    """The entries of a JSON lines file; a line torn by a crash is skipped."""
    if not path.exists():
        return []
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "item" in entry:
                entries.append(entry)
    return entries


def _write_text(path, text):
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))


def main(argv=None):
    """Command line: export the items of a folder, or import a filled CSV."""
    parser = argparse.ArgumentParser(
        prog="python -m imbcfkd.annotation",
        description="Export the items of a HumanTeacher's annotation folder as "
        "images and a CSV, or import the answers of a filled-in CSV.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write PNG images and answers.csv")
    export.add_argument("folder", help="the annotation folder")
    export.add_argument("output", help="folder to write the images and CSV to")
    imported = commands.add_parser("import", help="read the answers of a CSV")
    imported.add_argument("folder", help="the annotation folder")
    imported.add_argument("csv", help="the filled-in answers.csv")
    args = parser.parse_args(argv)
    if args.command == "export":
        path = export_annotations(args.folder, args.output)
        print(f"Wrote {path}: fill in the answer column, then import it.")
    else:
        n = import_annotations(args.folder, args.csv)
        print(f"Imported {n} answers into {args.folder}.")


if __name__ == "__main__":
    main()
