"""Which students' notebooks are similar, and on what evidence: for staff only, never shown to students.

In this course every honest student writes nearly the reference's short answer into the same released template,
so plain code similarity ranks half the class as alike. Here only what two students share and the class does not
counts, and each kind of evidence is judged on its own:

- code: what the student wrote (the solution cells and the cells they added), read with ``tokenize`` (comments and
  formatting dropped, every name the notebook assigns read as one name ``V``), cut into k-grams of K tokens, cell by
  cell. A student's own tokens are those no k-gram of the released template, of the reference solution or of
  more than a few students (``common_limit``: what everyone writes) covers, and, in a solution cell, those that
  differ from the reference's answer (``difflib``). Two students' evidence is the own tokens their shared k-grams
  cover, each weighed by how few share it; it is shown side by side (``difflib`` again, line by line).
- outputs: the same numbers of a stochastic run (a training log's losses, printed probabilities) in two notebooks;
  two honest runs never print the same losses. Numbers the template or the reference print, or many students
  print (deterministic results), are no evidence.
- lineage: what the editor records of a file's history (the ids cells get when a file is first opened or a cell is
  made, Colab's output ids, the account in a cell's execution record, Colab's provenance), the same in two
  students' files: one file. Marks of the template or shared by many (the copy the course handed out) are not.

Every k-gram is kept (no winnowing's window): a student's own code is a few hundred tokens, so keeping them all
costs little and keeps a two-line answer's resolution. Written here rather than taken from a plagiarism tool
(copydetect: files in, one score out) because the discount by how many students share a k-gram, the cell as the
unit and the mapping back to lines for the side-by-side view are what this needs and what such tools lack.

Pure: notebooks in, pairs with evidence out; nothing is executed. ``page`` renders the staff's HTML.
"""

from __future__ import annotations

import ast
import difflib
import io
import itertools
import keyword
import math
import re
import tokenize
from collections import defaultdict
from dataclasses import dataclass, field

from ..course.notebook import grade_id, is_solution
from .pages import render

K = 10                       # tokens per k-gram: about one short line of code
COMMON_MIN = 3               # a k-gram (an output line, a mark) that at most this many students share is evidence…
COMMON_SHARE = 0.05          # …or at most this share of the class, in a large class; beyond, everyone writes it
MIN_CODE_TOKENS = 40         # code flags when the code only two students wrote is at least this many tokens
MIN_OUTPUT_DIGITS = 8        # an output line counts when its numbers hold this many significant digits
MIN_OUTPUT_LINES = 2         # outputs flag on this many identical lines of a run
MIN_ID_LENGTH = 8            # shorter cell ids could be a tool's counters, not random
MIN_SHARED_IDS = 2           # lineage flags on this many shared cell ids (an account or provenance: one)
NEAR_PAIRS = 50              # pairs not flagged that the report still lists, most similar first
SHOWN_LINES = 8              # output lines shown per pair

CODE, OUTPUTS, LINEAGE = "code", "outputs", "lineage"
KIND_TITLES = {CODE: ("コード", "code"), OUTPUTS: ("出力", "outputs"), LINEAGE: ("ファイルの履歴", "lineage")}


# --- input -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Handed:
    """One student's notebook as intake chose it (the latest); ``cohort``: '' for this class, else the past
    cohort's label (its folder's name)."""
    student: str
    notebook: dict
    cohort: str = ""

    @property
    def name(self) -> str:
        return f"{self.cohort}/{self.student}" if self.cohort else self.student


# --- code: tokens and k-grams ------------------------------------------------------------------------------

MAGIC = re.compile(r"^\s*[%!]")
SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
STRUCTURE = {tokenize.NEWLINE: "⏎", tokenize.INDENT: "→", tokenize.DEDENT: "←"}
FALLBACK_TOKEN = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\S")


def _without_magics(source: str) -> str:
    """IPython's ``%magic`` and ``!shell`` lines blanked (the line numbers kept): they are not Python."""
    return "\n".join("" if MAGIC.match(line) else line for line in source.splitlines())


def bound_names(sources) -> set[str]:
    """The names a notebook assigns (variables, functions, arguments, loop targets): the ones a student may rename
    without changing the code. Imported names are kept as they are (they name the API)."""
    names = set()
    for source in sources:
        try:
            tree = ast.parse(_without_magics(source))
        except (SyntaxError, ValueError):
            names.update(re.findall(r"^\s*([A-Za-z_]\w*)\s*=(?!=)", source, re.MULTILINE))
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler)):
                names.add(node.name or "")
    return names - set(keyword.kwlist)


def _number(text: str) -> str:
    try:
        return repr(float(text))                      # 255, 255.0 and 255. are one number
    except (ValueError, OverflowError):
        return text


def _string(text: str) -> str:
    try:
        value = ast.literal_eval(text)                # 'relu' and "relu" are one string
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return "F"                                    # an f-string
    return f"S:{value}" if isinstance(value, str) and len(value) <= 40 else "S"


def _raw_tokens(source: str) -> list[tuple[int, str, int]]:
    """(type, text, 0-based line) of the code's tokens; a cell tokenize cannot read is split by a plain regex."""
    text = _without_magics(source)
    try:
        return [(t.type, t.string, t.start[0] - 1) for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type not in SKIPPED]
    except (tokenize.TokenError, SyntaxError):
        return [(tokenize.NAME if m.group()[0].isalpha() or m.group()[0] == "_" else tokenize.OP, m.group(), n)
                for n, line in enumerate(text.splitlines()) for m in FALLBACK_TOKEN.finditer(line.split("#")[0])]


def normalised_tokens(source: str, bound: set[str]) -> list[tuple[str, int]]:
    """(token, line) with comments and formatting gone, assigned names read as ``V`` (not an attribute after a
    dot, nor a keyword argument's name), numbers and strings written one way."""
    raw = _raw_tokens(source)
    out, brackets = [], []                 # the open brackets: True for a def's parameter list
    for i, (kind, text, line) in enumerate(raw):
        if kind == tokenize.OP:
            if text in "([{":
                brackets.append(text == "(" and i >= 2 and raw[i - 2][1] == "def")
            elif text in ")]}" and brackets:
                brackets.pop()
            out.append((text, line))
        elif kind == tokenize.NAME:
            after_dot = i > 0 and raw[i - 1][1] == "."
            keyword_arg = brackets and not brackets[-1] and i + 1 < len(raw) and raw[i + 1][1] == "="
            out.append(("V" if text in bound and not after_dot and not keyword_arg and not keyword.iskeyword(text)
                        else text, line))
        elif kind == tokenize.NUMBER:
            out.append((_number(text), line))
        elif kind == tokenize.STRING:
            out.append((_string(text), line))
        elif kind in STRUCTURE:
            out.append((STRUCTURE[kind], line))
        elif text.strip():
            out.append((text, line))
    return out


def kgrams(tokens: list[tuple[str, int]]) -> list[int]:
    """The hash of each run of K tokens (gram i covers tokens i … i+K-1); a cell shorter than K is one gram."""
    words = [t for t, _ in tokens]
    if not words:
        return []
    return [hash(tuple(words[i:i + K])) for i in range(max(1, len(words) - K + 1))]


@dataclass
class Cell:
    """A code cell the student wrote in: a solution cell or one they added."""
    label: str
    source: str
    tokens: list[tuple[str, int]]
    grams: list[int]
    novel: bytearray = field(default_factory=bytearray)   # 1: a token no excluded k-gram covers (``mark_novel``)


def _code_cells(nb) -> list:
    return [c for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


@dataclass
class Course:
    """What the course hands out, read once: the given cells' grade ids, the solution cells' ids, and the k-grams,
    output lines and lineage marks of the template and the reference (never evidence)."""
    given: set[str]
    solutions: set[str]
    bound: set[str]
    grams: set[int]
    outputs: set[tuple]
    marks: set[str]
    answers: dict[str, list[str]] = field(default_factory=dict)   # solution cell → the reference's tokens

    @classmethod
    def of(cls, reference, template=None) -> Course:
        notebooks = [nb for nb in (reference, template) if nb is not None]
        cells = [c for nb in notebooks for c in _code_cells(nb)]
        solutions = {grade_id(c) for c in cells if is_solution(c) and isinstance(grade_id(c), str)}
        given = {grade_id(c) for nb in notebooks for c in nb.get("cells", [])
                 if isinstance(grade_id(c), str)} - solutions
        bound = bound_names(_source(c) for c in cells)
        grams = {g for c in cells for g in kgrams(normalised_tokens(_source(c), bound))}
        answers = {grade_id(c): [t for t, _ in normalised_tokens(_source(c), bound)]
                   for c in _code_cells(reference) if grade_id(c) in solutions}
        return cls(given, solutions, bound, grams, set().union(*map(output_lines, notebooks)),
                   set().union(*map(lineage_marks, notebooks)), answers)


def own_cells(nb, course: Course) -> list[Cell]:
    """The student's code cells, the given ones left out (by grade id; a given cell whose metadata an editor
    dropped is all template k-grams, so it weighs nothing either)."""
    chosen = []
    for index, cell in enumerate(nb.get("cells", []), start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        gid = grade_id(cell) or cell.get("id")      # an editor that drops nbgrader's metadata keeps the id
        if isinstance(gid, str) and gid in course.given:
            continue
        label = gid if isinstance(gid, str) and gid in course.solutions else f"cell {index} (added)"
        chosen.append((label, _source(cell)))
    bound = course.bound | bound_names(source for _, source in chosen)
    cells = []
    for label, source in chosen:
        tokens = normalised_tokens(source, bound)
        cells.append(Cell(label, source, tokens, kgrams(tokens)))
    return cells


# --- outputs ---------------------------------------------------------------------------------------------

FLOAT = re.compile(r"(?<![\w.])[-+]?\d*\.\d+(?:[eE][-+]?\d+)?")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x08]")


def _digits(number: str) -> int:
    """Significant digits of a printed float: what makes two runs' numbers unlikely to agree by chance."""
    mantissa = re.split(r"[eE]", number.lstrip("+-"))[0].replace(".", "")
    return len(mantissa.strip("0"))


def _output_texts(cell):
    for out in cell.get("outputs", []) or []:
        if not isinstance(out, dict):
            continue
        text = out.get("text") if out.get("output_type") == "stream" else (out.get("data") or {}).get("text/plain")
        if text:
            yield "".join(text) if isinstance(text, list) else str(text)


def output_lines(nb) -> dict[tuple, str]:
    """The notebook's printed lines that carry enough numbers to come from one run: (its numbers) → the line."""
    found = {}
    for cell in _code_cells(nb):
        for text in _output_texts(cell):
            for raw in text.split("\n"):
                line = ANSI.sub("", raw.split("\r")[-1] or raw).strip()
                numbers = tuple(FLOAT.findall(line))
                if sum(map(_digits, numbers)) >= MIN_OUTPUT_DIGITS:
                    found.setdefault(numbers, line)
    return found


# --- lineage ---------------------------------------------------------------------------------------------

def lineage_marks(nb) -> dict[str, tuple[str, str]]:
    """What the editor recorded of the file's history: mark → (what it is, as shown to staff)."""
    marks = {}
    metadata = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    colab = metadata.get("colab") if isinstance(metadata.get("colab"), dict) else {}
    for entry in colab.get("provenance") or []:
        if isinstance(entry, dict) and entry.get("file_id"):
            marks[f"file:{entry['file_id']}"] = ("provenance", str(entry["file_id"]))
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict):
            continue
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        for what, value in (("cell id", cell.get("id")), ("cell id", meta.get("id")),
                            ("output id", meta.get("outputId"))):
            if isinstance(value, str) and len(value) >= MIN_ID_LENGTH:
                marks[f"id:{value}"] = (what, value)
        info = meta.get("executionInfo") if isinstance(meta.get("executionInfo"), dict) else {}
        user = info.get("user") if isinstance(info.get("user"), dict) else {}
        key = user.get("userId") or user.get("displayName")
        if key:
            shown = " ".join(str(v) for v in (user.get("displayName"), f"({user['userId']})" if user.get("userId")
                                                else None) if v)
            marks[f"account:{key}"] = ("account", shown)
    return marks


# --- the pairs -------------------------------------------------------------------------------------------

@dataclass
class Evidence:
    """One kind of evidence for one pair, judged on its own."""
    kind: str
    flagged: bool
    score: float
    detail: tuple[str, str]                 # (Japanese, English): what it rests on
    cells: list = field(default_factory=list)     # code: matched cells (labels, shared tokens, side-by-side rows)
    lines: list = field(default_factory=list)     # outputs: the identical lines
    marks: list = field(default_factory=list)     # lineage: (what, value)
    between: tuple = field(default=(), repr=False)  # code: (a's cells, b's cells, the shared k-grams), for ``cells``

    def to_json(self) -> dict:
        data = {"kind": self.kind, "flagged": self.flagged, "score": round(self.score, 3),
                "detail": self.detail[1], "detail_ja": self.detail[0]}
        if self.kind == CODE:
            data["cells"] = [{"a": c["a"], "b": c["b"], "shared_tokens": c["shared_tokens"],
                              "passages": c["passages"]} for c in self.cells]
        if self.kind == OUTPUTS:
            data["lines"] = self.lines
        if self.kind == LINEAGE:
            data["marks"] = [{"what": w, "value": v} for w, v in self.marks]
        return data


@dataclass
class Pair:
    students: tuple[str, str]
    evidence: list[Evidence]
    past: bool = False                       # one of the two is a past cohort's

    @property
    def flagged(self) -> bool:
        return any(e.flagged for e in self.evidence)

    @property
    def score(self) -> float:
        return max((e.score for e in self.evidence), default=0.0)

    def to_json(self) -> dict:
        return {"students": list(self.students), "flagged": self.flagged, "score": round(self.score, 3),
                "past": self.past, "evidence": [e.to_json() for e in self.evidence]}


@dataclass
class Report:
    assignment: str
    students: int
    past: dict[str, int]
    pairs: list[Pair]
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[Pair]:
        return [p for p in self.pairs if p.flagged]

    def to_json(self) -> dict:
        return {"assignment": self.assignment, "students": self.students, "past_cohorts": self.past,
                "settings": {"k": K, "common_limit": common_limit(self.students + sum(self.past.values())),
                             "min_code_tokens": MIN_CODE_TOKENS,
                             "min_output_lines": MIN_OUTPUT_LINES, "min_shared_ids": MIN_SHARED_IDS},
                "notes": self.notes, "pairs": [p.to_json() for p in self.pairs]}


def common_limit(n: int) -> int:
    """How many notebooks may share a k-gram (an output line, a mark) before it is what everyone writes: a few,
    or a small share of a large class; never all of a class of three or more (the file everyone copied)."""
    return max(2, min(n - 1, max(COMMON_MIN, math.ceil(COMMON_SHARE * n))))


@dataclass
class _Read:
    """One notebook as compared: its cells, and the evidence it could share."""
    handed: Handed
    cells: list[Cell]
    grams: set[int]
    outputs: dict[tuple, str]
    marks: dict[str, tuple[str, str]]


def _holders(sets: list[set]) -> dict:
    """Which notebooks (by index) hold each item."""
    holders = defaultdict(list)
    for i, items in enumerate(sets):
        for item in items:
            holders[item].append(i)
    return holders


def _shared_by_pair(holders: dict, limit: int, pairable) -> dict[tuple[int, int], set]:
    """For each pair of notebooks, the items both hold that at most ``limit`` notebooks hold (an inverted index:
    only rare items are walked, so the cost follows the evidence, not the class's size squared)."""
    shared = defaultdict(set)
    for item, who in holders.items():
        if 2 <= len(who) <= limit:
            for i, j in itertools.combinations(who, 2):
                if pairable(i, j):
                    shared[i, j].add(item)
    return shared


def mark_novel(cell: Cell, excluded, answer: list[str] | None = None) -> None:
    """Which of the cell's tokens are the student's own: none a template, reference or common k-gram covers (so
    one rare number in a common line makes one novel token, not K), and, in a solution cell, none that lines up
    with the reference's answer (``difflib``): writing ``reshape(-1, 784)`` for ``reshape(60000, 784)`` is two
    tokens of one's own, however many k-grams it changes."""
    cell.novel = bytearray(b"\1" * len(cell.tokens))
    for i, g in enumerate(cell.grams):
        if excluded(g):
            cell.novel[i:i + K] = bytes(len(cell.novel[i:i + K]))
    if answer:
        words = [t for t, _ in cell.tokens]
        for block in difflib.SequenceMatcher(None, answer, words, autojunk=False).get_matching_blocks():
            cell.novel[block.b:block.b + block.size] = bytes(block.size)


def compare(handed: list[Handed], reference, template=None, assignment: str = "") -> Report:
    """Every pair of this class's notebooks (and each of them with a past cohort's, never two past ones) with
    the evidence they share; the flagged pairs and the most similar others, most similar first."""
    course = Course.of(reference, template)
    read = []
    for h in handed:
        cells = own_cells(h.notebook, course)
        read.append(_Read(h, cells, {g for c in cells for g in c.grams} - course.grams,
                          {k: v for k, v in output_lines(h.notebook).items() if k not in course.outputs},
                          {k: v for k, v in lineage_marks(h.notebook).items() if k not in course.marks}))
    limit = common_limit(len(read))

    def pairable(i: int, j: int) -> bool:
        a, b = read[i].handed, read[j].handed
        return not (a.cohort and b.cohort) and a.student != b.student   # not two past ones; not one's own

    holders = _holders([r.grams for r in read])
    for r in read:
        for cell in r.cells:
            mark_novel(cell, lambda g: g in course.grams or len(holders[g]) > limit, course.answers.get(cell.label))
    shared = {CODE: _shared_by_pair(holders, limit, pairable),
              OUTPUTS: _shared_by_pair(_holders([set(r.outputs) for r in read]), limit, pairable),
              LINEAGE: _shared_by_pair(_holders([set(r.marks) for r in read]), limit, pairable)}
    pairs = []
    for i, j in sorted(set().union(*map(set, shared.values()))):
        a, b = read[i], read[j]
        evidence = [e for e in (
            _code(a, b, {g: 1 / (len(holders[g]) - 1) for g in shared[CODE].get((i, j), ())}),
            _outputs(a, b, shared[OUTPUTS].get((i, j), set())),
            _lineage(a, b, shared[LINEAGE].get((i, j), set()))) if e]
        if evidence:
            pairs.append(Pair((a.handed.name, b.handed.name), evidence, bool(a.handed.cohort or b.handed.cohort)))
    pairs.sort(key=lambda p: (not p.flagged, -p.score, p.students))
    kept = [p for p in pairs if p.flagged] + [p for p in pairs if not p.flagged][:NEAR_PAIRS]
    for pair in kept:                       # the side-by-side view: only for the pairs the report lists
        for e in pair.evidence:
            if e.kind == CODE:
                e.cells = matched_cells(*e.between)
    past = defaultdict(int)
    for h in handed:
        if h.cohort:
            past[h.cohort] += 1
    return Report(assignment, sum(not h.cohort for h in handed), dict(past), kept)


def _covered(cells: list[Cell], grams: dict[int, float] | None = None) -> float:
    """How many of the cells' novel tokens lie in one of ``grams`` (None: in any), each counted at the weight of
    the rarest of them that covers it."""
    total = 0.0
    for cell in cells:
        if grams is None:
            total += sum(cell.novel)
            continue
        weights = [0.0] * len(cell.tokens)
        for i, g in enumerate(cell.grams):
            w = grams.get(g)
            if w:
                for t in range(i, min(i + K, len(weights))):
                    if cell.novel[t] and w > weights[t]:
                        weights[t] = w
        total += sum(weights)
    return total


def _code(a: _Read, b: _Read, shared: dict[int, float]) -> Evidence | None:
    """The code only these two wrote: its size in novel tokens, each weighed by how few share it (``shared``: the
    k-grams both hold → 1 / (holders - 1): a passage two students share counts whole, three half); it flags from
    MIN_CODE_TOKENS (a partial copy flags too), where its score is 0.5, and scores 1 from twice that. Its share
    of each one's own code is said, not scored: a large share of a tiny answer is no evidence."""
    if not shared:
        return None
    covered_a, covered_b = _covered(a.cells, shared), _covered(b.cells, shared)
    if not (covered_a and covered_b):
        return None
    share_a = _covered(a.cells, dict.fromkeys(shared, 1.0)) / max(1, _covered(a.cells))
    share_b = _covered(b.cells, dict.fromkeys(shared, 1.0)) / max(1, _covered(b.cells))
    tokens, share = round(min(covered_a, covered_b)), min(1.0, max(share_a, share_b))
    score = min(1.0, tokens / (2 * MIN_CODE_TOKENS))
    flagged = tokens >= MIN_CODE_TOKENS
    who = a.handed.name if share_a >= share_b else b.handed.name
    return Evidence(CODE, flagged, score, (
        f"クラスのほかの学生が書いていないコード {tokens} トークンが一致 ({who} 自身のコードの {share:.0%})",
        f"{tokens} tokens of code the rest of the class did not write are the same ({share:.0%} of {who}'s code)"),
        between=(a.cells, b.cells, shared))


def _outputs(a: _Read, b: _Read, shared: set[tuple]) -> Evidence | None:
    if not shared:
        return None
    lines = sorted(a.outputs[s] for s in shared)
    digits = sum(_digits(x) for s in shared for x in s)
    flagged = len(shared) >= MIN_OUTPUT_LINES
    return Evidence(OUTPUTS, flagged, min(1.0, len(shared) / (2 * MIN_OUTPUT_LINES)), (
        f"実行のたびに変わるはずの出力が {len(shared)} 行まったく同じ (有効数字 {digits} 桁)",
        f"{len(shared)} output line(s) that differ from run to run are identical ({digits} significant digits)"),
        lines=lines[:SHOWN_LINES])


def _lineage(a: _Read, b: _Read, shared: set[str]) -> Evidence | None:
    if not shared:
        return None
    marks = sorted(a.marks[m] for m in shared)
    ids = sum(what in ("cell id", "output id") for what, _ in marks)
    strong = [what for what, _ in marks if what in ("account", "provenance")]
    flagged = bool(strong) or ids >= MIN_SHARED_IDS
    said_ja = ", ".join(filter(None, [f"セル/出力の ID {ids} 個" if ids else "",
                                      "実行したアカウント" if "account" in strong else "",
                                      "Colab の元ファイル (provenance)" if "provenance" in strong else ""]))
    said_en = ", ".join(filter(None, [f"{ids} cell/output id(s)" if ids else "",
                                      "the account that ran cells" if "account" in strong else "",
                                      "Colab's source file (provenance)" if "provenance" in strong else ""]))
    return Evidence(LINEAGE, flagged, 1.0 if flagged else ids / (2 * MIN_SHARED_IDS), (
        f"編集ソフトが記録したファイルの履歴が同じ: {said_ja} (1 つのファイルから来ています)",
        f"the file history the editor records is the same: {said_en} (one file)"), marks=marks)


# --- the side-by-side view ---------------------------------------------------------------------------------

def matched_cells(a_cells: list[Cell], b_cells: list[Cell], shared: dict[int, float]) -> list[dict]:
    """Each of a's cells holding shared code, beside the b cell it shares most with (cells may be reordered),
    with its rows for the side-by-side view and its matched passages (line ranges)."""
    found = []
    for ca in a_cells:
        mine = set(ca.grams) & shared.keys()
        if not mine:
            continue
        cb = max(b_cells, key=lambda c: len(mine & set(c.grams)))
        both = mine & set(cb.grams)
        if not both:
            continue
        rows, passages = side_by_side(ca, cb, both)
        weights = {g: shared[g] for g in both}
        found.append({"a": ca.label, "b": cb.label, "shared_tokens": round(min(_covered([ca], weights),
                                                                               _covered([cb], weights))),
                      "rows": rows, "passages": passages})
    return sorted(found, key=lambda c: -c["shared_tokens"])


def _lines_in(cell: Cell, grams: set[int]) -> set[int]:
    """The source lines that hold a novel token of one of ``grams``."""
    lines = set()
    for i, g in enumerate(cell.grams):
        if g in grams:
            window = zip(cell.tokens[i:i + K], cell.novel[i:i + K], strict=True)
            lines.update(line for (_, line), novel in window if novel)
    return lines


def _normalised_lines(cell: Cell) -> list[str]:
    lines = [[] for _ in cell.source.splitlines() or [""]]
    for token, line in cell.tokens:
        if 0 <= line < len(lines) and token not in STRUCTURE.values():
            lines[line].append(token)
    return [" ".join(words) for words in lines]


def side_by_side(a: Cell, b: Cell, shared: set[int]) -> tuple[list[dict], list[dict]]:
    """The two cells aligned line by line (``difflib`` on their normalised lines, so renamed names and reworded
    comments still align): each row says whether it is a matched passage (shared code only these two wrote),
    the same but given or common code, or different; and the matched passages as 1-based line ranges."""
    a_text, b_text = a.source.splitlines() or [""], b.source.splitlines() or [""]
    hot_a, hot_b = _lines_in(a, shared), _lines_in(b, shared)
    matcher = difflib.SequenceMatcher(None, _normalised_lines(a), _normalised_lines(b), autojunk=False)
    rows, passages = [], []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        for i, j in itertools.zip_longest(range(a0, a1), range(b0, b1)):
            matched = tag == "equal" and (i in hot_a or j in hot_b)
            rows.append({"a_no": "" if i is None else i + 1, "a": "" if i is None else a_text[i],
                         "b_no": "" if j is None else j + 1, "b": "" if j is None else b_text[j],
                         "kind": "match" if matched else "same" if tag == "equal" else "differ"})
        if tag == "equal" and any(i in hot_a for i in range(a0, a1)):
            passages.append({"a_lines": [a0 + 1, a1], "b_lines": [b0 + 1, b1]})
    return rows, passages


# --- the page ----------------------------------------------------------------------------------------------

def page_context(report: Report) -> dict:
    """What the report's templates read (similarity.html, and the site's staff page around the same body)."""
    return {"report": report, "kinds": KIND_TITLES, "limit": common_limit(report.students + sum(report.past.values())),
            "settings": {"k": K, "min_code_tokens": MIN_CODE_TOKENS,
                         "min_output_lines": MIN_OUTPUT_LINES, "min_shared_ids": MIN_SHARED_IDS}}


def page(report: Report) -> str:
    """The report as staff read it: the ranking, then each flagged pair's evidence and its cells side by side."""
    return render("similarity.html.j2", **page_context(report))
