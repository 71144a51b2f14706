"""``python -m autograder``: a thin layer over list, release, grade (one notebook or a class), check, submit, publish,
demo, the course gradebook, the LMS's upload files, the store of runs kept for regrading, students' own deadlines
(extension), the submission site (serve, roster, staff) and the similarity report. Every command works on one of the
course's assignments (reference/<id>/): named, or found from the notebook's release metadata or the exchange layout.

Exit status: 0 done (whatever the score), 1 refused by the course's rules, 2 the grader could not do its job."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import PROJECT_ROOT
from .classroom.executors import CLUSTER_OPTIONS, EXECUTORS
from .course import clock, extensions
from .course.assignment import config_for, which_assignment
from .course.config import load_config
from .errors import GraderError, Refusal
from .run.device import DEVICES, native_output_to


def cmd_list(args) -> int:
    from .course.assignment import assignment_ids
    from .course.clock import local_text

    config = load_config(args.config)
    ids = assignment_ids(config)
    if not ids:
        print(f"no assignments: add reference/<id>/settings.py under {config.root}")
        return 0
    for assignment_id in ids:
        try:
            a = config_for(config, assignment_id).assignment
        except GraderError as exc:
            print(f"{assignment_id}  (its settings cannot be read: {exc})")
            continue
        released = "released" if a.release_notebook.is_file() else "not released"
        published = "published" if (config.publish_dir / a.id).is_dir() else "not published"
        late = {"reject": "late work refused", "accept": "late work accepted"}.get(
            a.late_policy, a.late_penalty.describe()[1] if a.late_penalty else a.late_policy)
        extended = len(extensions.extensions_of(config, a.id))
        print(f"{a.id}  {a.title_ja} / {a.title_en}\n    deadline {local_text(a.deadline, config.timezone)} · "
              f"{late} · {released} · {published}"
              + (f" · {extended} extension(s): extension list {a.id}" if extended else ""))
    return 0


def cmd_release(args) -> int:
    config = config_for(load_config(args.config), args.assignment)
    from .lifecycle.release import release

    print(f"wrote {release(config)}")
    return 0


def cmd_grade(args) -> int:
    from .grading.store import holds_class_folders

    target = Path(args.notebook)
    if not target.exists():              # said first: before the configuration, TensorFlow or the GPU
        raise GraderError(f"見つかりません / not found: {target} (no notebook, folder or .zip at "
                          f"{target.absolute()})")
    config = load_config(args.config)
    is_class = target.is_dir() or target.suffix.lower() == ".zip"
    if not is_class:
        config = config_for(config, which_assignment(config, target, args.assignment))
    out = Path(args.out) if args.out else GRADES if is_class else SINGLE_GRADES / target.stem
    if not is_class and holds_class_folders(out):      # said before anything, even a log, is written there
        raise GraderError(f"{out} はクラスの採点結果のフォルダです。1 冊のノートブックには別の --out を指定してください。\n"
                          f"{out} is a class's graded folder, or holds one (gradebook.csv, results/): one notebook's "
                          f"results are not mixed into it; give another --out (default: {SINGLE_GRADES}/<notebook "
                          "name>)")
    return _logging_tensorflow(out / "logs" / "grader.log" if is_class else out / "grader.log",
                               lambda: (_grade_class if is_class else _grade_one)(target, out, args, config))


GRADES = Path("grades")                      # a class's results: grades/<assignment>/, whatever the export holds
SINGLE_GRADES = GRADES / "single"            # one notebook's: grades/single/<notebook>/, never a class's folder
COMMAND_LOGS = GRADES / "logs"               # the log of a command with no output folder of its own


def _logging_tensorflow(log_path: Path, run):
    """``run()`` with TensorFlow's native start-up lines (cuInit, oneDNN, absl) sent to ``log_path`` and the
    grader's own lines on the terminal; an error says where TensorFlow's words are, when it said any."""
    with native_output_to(log_path) as log:
        try:
            return run()
        except GraderError as exc:
            if not log.said_something():
                raise
            raise GraderError(f"{exc}\n  TensorFlow 自身の出力 / TensorFlow's own messages (e.g. why CUDA did not "
                              f"start): {log.path}") from exc


def _grade_one(target: Path, out: Path, args, config) -> int:
    from .classroom.single import FEEDBACK_PAGE, grade_into
    from .reports.report import format_table

    if args.only or args.roster or args.worksheet:
        raise GraderError(f"{'--only chooses' if args.only else '--roster names' if args.roster else '--worksheet lists'}"
                          " students of a class: give a folder of submissions or an LMS .zip")
    if args.executor != "local":
        raise GraderError(f"--executor {args.executor} grades a class: give a folder of submissions or an LMS .zip")
    result, how = grade_into(target, out, config, device=args.device, fused=not args.exact_fit, rerun=args.rerun,
                             regrade=args.regrade)
    print(format_table(result))
    print(f"results:  {out / 'results.json'} ({how})\nfeedback: {out / FEEDBACK_PAGE}")
    return 0


def _grade_class(source: Path, out: Path, args, config) -> int:
    from .classroom.executors import make_executor

    roster = _roster_ids(Path(args.roster)) if args.roster else ()     # read before any grading starts
    executor = make_executor(args.executor, **{name: getattr(args, name) for name in CLUSTER_OPTIONS})
    if args.executor == "local":
        from .classroom.pool import worker_context

        worker_context()        # the workers' fork server starts importing Keras now, beside this process's imports
    from .classroom.batch import grade_classes

    reports = grade_classes(source, out, config, args.assignment, workers=args.workers, device=args.device,
                            regrade=args.regrade, rerun=args.rerun, only=args.only, exact_fit=args.exact_fit,
                            progress=not args.quiet, executor=executor, roster=roster,
                            worksheet=Path(args.worksheet) if args.worksheet else None)
    for assignment_id, report in reports.items():
        if len(reports) > 1:
            print(f"== {assignment_id}")
        _report_class(report)
        if args.worksheet:
            _write_lms_files(report.out, Path(args.worksheet), config_for(config, assignment_id))
    return 0


def _write_lms_files(folder: Path, worksheet: Path, config) -> None:
    from .classroom.lms import write_back

    for path in write_back(folder, worksheet, config):
        print(f"for the LMS: {path}")


def cmd_lms(args) -> int:
    from .reports.gradebook import assignment_of

    folder, worksheet = Path(args.folder), Path(args.worksheet)
    for path in (folder, worksheet):
        if not path.exists():
            raise GraderError(f"見つかりません / not found: {path}")
    assignment = assignment_of(folder)
    if assignment is None:
        raise GraderError(f"{folder} に採点結果がありません / no graded class in {folder} (give grades/<assignment>)")
    _write_lms_files(folder, worksheet, config_for(load_config(args.config), assignment))
    return 0


def cmd_similarity(args) -> int:
    from .classroom.similar import compare_class
    from .files import write_atomic, write_json
    from .reports.report import count
    from .reports.similarity import page

    for path in [args.submissions, *(args.against or [])]:
        if not Path(path).exists():
            raise GraderError(f"見つかりません / not found: {path}")
    report = compare_class(Path(args.submissions), load_config(args.config), args.assignment,
                           [Path(p) for p in args.against or []], Path(args.worksheet) if args.worksheet else None)
    out = Path(args.out)
    write_json(out / "similarity.json", report.to_json())
    write_atomic(out / "similarity.html", page(report))
    print(f"{report.assignment}: {count(report.students, 'student')}, {count(len(report.flagged), 'similar pair')} "
          f"flagged ({count(len(report.pairs), 'pair')} listed)")
    for pair in report.flagged:
        kinds = ", ".join(e.kind for e in pair.evidence if e.flagged)
        print(f"  {pair.students[0]} ↔ {pair.students[1]}  {pair.score:.2f}  ({kinds})")
    for note in report.notes:
        print(f"  note: {note}", file=sys.stderr)
    print(f"report: {out / 'similarity.html'}\ndata:   {out / 'similarity.json'} (staff only: never show it to "
          "students)")
    return 0


def _roster_ids(path: Path) -> list[str]:
    """The student ids of a roster CSV, read as `roster import` reads one (an LMS export's headers work)."""
    from .site.people import read_roster

    return [row.student for row in read_roster(path)]


def _report_class(report) -> None:
    from .grading.result import INFRASTRUCTURE, checks_not_graded, infrastructure_reasons
    from .reports.report import count, unofficial_warning

    out = report.out
    counts = " · ".join(f"{n} {status}" for status, n in sorted(report.counts.items()))
    print(f"{count(len(report.results), 'student')}: {counts} ({report.regraded} regraded from stored runs, "
          f"{report.executed} executed, {report.reused} unchanged) in {report.seconds:.0f} s")
    print(f"gradebook: {out / 'gradebook.csv'}\nsummary:   {out / 'summary.html'}\nfeedback:  {out / 'feedback'}/")
    flagged = checks_not_graded(report.results[s] for s in sorted(report.results))
    if flagged:
        students = _some([f"{student} ({', '.join(checks)})" for student, checks in flagged.items()])
        print(f"checks not graded (a grader failed; no points given or taken): {students} — fix the grader and "
              "rerun the same command", file=sys.stderr)
    unofficial = sum(not r.official for r in report.results.values())
    if unofficial:
        ja, en = unofficial_warning(unofficial, len(report.results))
        print(f"警告: {ja}\nWARNING: {en}", file=sys.stderr)
    for why, students in infrastructure_reasons(report.results[s] for s in sorted(report.results)).items():
        print(f"infrastructure error: {_some(students)}: {why}", file=sys.stderr)
    if report.counts.get(INFRASTRUCTURE):
        print("some submissions hit an infrastructure error (no score given): fix the runner and rerun the same "
              "command; only those are graded again", file=sys.stderr)


def _some(names: list[str], shown: int = 5) -> str:
    """A few names and how many more: one line for a reason however many students it failed."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def cmd_check(args) -> int:
    from .grading.grade import grade_notebook
    from .grading.graders import check_graders
    from .reports.report import format_self_check

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise GraderError(f"見つかりません / not found: {notebook} (no notebook at {notebook.absolute()})")
    config = load_config(args.config)
    config = config_for(config, which_assignment(config, notebook, args.assignment))
    result = _logging_tensorflow(COMMAND_LOGS / "check.log", lambda: grade_notebook(
        Path(args.notebook), config, device=args.device, cpu_fallback=True))
    print(format_self_check(result, check_graders(config)))     # collected for the grading above: not again
    return 0


def cmd_submit(args) -> int:
    from .lifecycle.submit import submit

    config = load_config(args.config)
    config = config_for(config, which_assignment(config, Path(args.notebook), args.assignment))
    receipt = submit(Path(args.notebook), args.student, config, allow_incomplete=args.allow_incomplete,
                     exchange=Path(args.exchange) if args.exchange else None)
    if receipt.replaced:
        print(f"以前の提出 ({receipt.replaced}) を置き換えました / replaced your earlier submission of "
              f"{receipt.replaced}")
    print(f"提出しました / submitted: {receipt.student} · {receipt.assignment} · {receipt.submitted_at_local} "
          f"({receipt.submitted_at})\n  sha256 {receipt.sha256}\n  {receipt.path}")
    return 0


def cmd_publish(args) -> int:
    from .lifecycle.publish import publish, withheld

    config = config_for(load_config(args.config), args.assignment)
    written = _logging_tensorflow(COMMAND_LOGS / "publish.log", lambda: publish(
        config, out=Path(args.out) if args.out else None, force=args.force, device=args.device,
        withhold_extended=args.withhold_extended))
    for path in written:
        print(f"wrote {path}")
    for line in withheld(config):
        print(f"withheld from {line} (the site shows it after their own deadline; hand out no copy before)")
    return 0


def cmd_extension(args) -> int:
    import getpass

    config = load_config(args.config)
    if args.action == "list":
        if len(args.items) > 1:
            raise GraderError("extension list takes at most one assignment id")
        found = extensions.extensions_of(config, args.items[0] if args.items else None)
        now = clock.now()
        for e in found:
            print(f"{e.assignment}  {e.student}  until {clock.local_text(e.until, config.timezone)}"
                  f"{'' if e.until > now else ' (ended)'}  granted by {e.granted_by} "
                  f"{clock.local_text(e.granted_at, config.timezone)}{f'  — {e.reason}' if e.reason else ''}")
        if not found:
            print("no extensions")
        return 0
    if len(args.items) != 2:
        raise GraderError(f"extension {args.action} takes STUDENT ASSIGNMENT")
    student, assignment = args.items
    if args.action == "remove":
        gone = extensions.remove(config, student, assignment)
        print(f"removed: {gone.student}'s deadline for {gone.assignment} is the class's again")
        return 0
    if not args.until:
        raise GraderError("extension add needs --until TIME, with its offset (e.g. --until 2024-05-23T23:59+09:00)")
    granted = extensions.add(config, student, assignment, args.until, args.reason or "",
                             args.by or getpass.getuser(), _known_students(config, args.roster))
    print(f"{granted.student} may hand in {granted.assignment} until "
          f"{clock.local_text(granted.until, config.timezone)} ({config.extensions_file})")
    if (config.publish_dir / assignment / f"{assignment}-solution.html").is_file():
        print(f"WARNING: {assignment}'s solution is already published in {config.publish_dir / assignment}: "
              f"{student} may have seen it", file=sys.stderr)
    return 0


def _known_students(config, roster: str | None) -> list[str] | None:
    """The students an extension may name: the roster CSV given, else the site's roster when the site has one;
    None (any well-formed id) for a course with neither."""
    if roster:
        return _roster_ids(Path(roster))
    if not (config.site_dir / "site.db").is_file():
        return None
    from .site.db import database_url, open_database
    from .site.people import all_students

    return [row.id for row in all_students(open_database(database_url(config.site_dir, None)))] or None


def cmd_demo(args) -> int:
    from .course.assignment import assignment_ids
    from .demo import run_demo

    config = load_config(args.config)
    ids = [args.assignment] if args.assignment else assignment_ids(config)
    configs = [config_for(config, i) for i in ids]           # every settings file checked before any training
    failed = [c.assignment.id for c in configs
              if _logging_tensorflow(COMMAND_LOGS / "demo.log", lambda: run_demo(c, device=args.device))]
    if len(configs) > 1:
        print(f"\ndemo of {len(configs)} assignments: " + (f"FAILED: {', '.join(failed)}" if failed else "all OK"))
    return 1 if failed else 0


def cmd_store(args) -> int:
    from .grading.store import find_run_stores
    from .reports.report import count, format_usage

    for store, referenced in find_run_stores(Path(args.out)):
        if args.action == "du":
            print(format_usage(store, store.usage(referenced)))
        else:
            runs, objects, freed = store.collect_garbage(referenced)
            print(f"{store.root}: removed {count(runs, 'run')} no result refers to and {count(objects, 'file')} no "
                  f"run holds ({freed / 1e6:.1f} MB freed); {count(len(referenced), 'run')} kept")
    return 0


def cmd_gradebook(args) -> int:
    from .files import write_atomic
    from .reports.gradebook import course_gradebook, find_gradebooks
    from .reports.report import count, format_points

    gradebooks = find_gradebooks([Path(f) for f in args.folders] or [Path("grades")])
    text, maxima = course_gradebook(gradebooks)
    out = Path(args.out)
    write_atomic(out, text)
    students = text.count("\n") - 1
    print(f"{count(students, 'student')} × {count(len(gradebooks), 'assignment')} "
          f"({', '.join(f'{a} /{format_points(m)}' for a, m in maxima.items())}): {out}")
    for assignment, path in gradebooks.items():
        print(f"  {assignment}: {path}")
    return 0


def _site(args, **kwargs):
    """The site of the data folder ``--data`` names. Every site command (serve and, through its umask, the check
    workers and jobs it starts; roster; staff) makes what it makes there its owner's alone: a roster imported
    before the first serve holds the links' hashes too."""
    from .site.core import PRIVATE_UMASK, Site

    os.umask(PRIVATE_UMASK)
    return Site(load_config(args.config), Path(args.data) if args.data else None, args.db, **kwargs)


UNSAFE_SERVE_WARNING = (
    "WARNING: serve --unsafe-without-sandbox: students' notebooks may run WITHOUT the sandbox, with this server's "
    "rights: they can read the session key (and so sign in as staff), the hidden graders and every submission. "
    "Never let students reach this server.")


def cmd_serve(args) -> int:
    import uvicorn

    from .run import sandbox
    from .site.app import SERVER_LIMITS, create_app, log_config

    if args.rehearse:                               # before anything reads the time; checks and jobs inherit it
        start = clock.rehearse(args.rehearse)
        print(f"autograder serve: REHEARSAL — the site's clock runs from {start.isoformat()}, not the real time; "
              "every page says so", flush=True)
    site = _site(args, public_url=args.public_url or f"http://{args.host}:{args.port}", device=args.device)
    try:                        # every upload's deadline reads it: a broken file is said now, not as a page's error
        extensions.load(site.config)
    except GraderError as exc:
        raise GraderError(f"serve does not start: {exc}") from exc
    site.unsafe_without_sandbox = args.unsafe_without_sandbox
    if args.unsafe_without_sandbox:
        print(UNSAFE_SERVE_WARNING, file=sys.stderr, flush=True)
    else:
        os.environ[sandbox.SITE_REQUIRES_SANDBOX] = "1"    # for this process, its check workers and its jobs
        try:
            sandbox.require(site.config.sandbox)
            sandbox.refuse_exposed_workdirs(site.data, PROJECT_ROOT, site.config.root)
        except GraderError as exc:
            raise GraderError(f"serve does not start: {exc}. Fix that, or only on a private test machine, never "
                              "facing students: serve --unsafe-without-sandbox") from exc
    for warning in site.keep_private():
        print(f"autograder serve: WARNING: {warning}", file=sys.stderr, flush=True)
    log = site.logs / "server.log"                  # TensorFlow's start-up lines: the server's terminal is uvicorn's

    def run() -> int:
        print(f"autograder serve: data {site.data} · {site.public_url} · {site.config.site_check_workers} check "
              f"worker(s) on the {site.check_device.upper()} · jobs grade with --device {args.device} · "
              f"TensorFlow's own lines: {log}", flush=True)
        uvicorn.run(create_app(site), host=args.host, port=args.port, proxy_headers=True,
                    forwarded_allow_ips=args.forwarded_allow_ips, log_level="info", log_config=log_config(),
                    **SERVER_LIMITS)
        return 0

    return _logging_tensorflow(log, run)


def cmd_roster(args) -> int:
    from .reports.report import count
    from .site import people

    site = _site(args)
    if args.action == "import":
        if len(args.items) != 1:
            raise GraderError("roster import takes one CSV file")
        added, updated, absent = people.import_roster(site.engine, people.read_roster(Path(args.items[0])))
        print(f"{count(added, 'student')} added, {updated} updated ({site.data})\n"
              "next: python -m autograder roster links --url https://YOUR-SITE --out links.csv (after adding "
              "latecomers: roster links --new … gives links only to those who have none)")
        if absent:
            print(f"not in this roster but still able to sign in ({len(absent)}): {' '.join(absent)}\n"
                  f"if they left the course: python -m autograder roster revoke {' '.join(absent)}")
    elif args.action == "links":
        if not args.url or not args.out:
            raise GraderError("roster links needs --url (the site's address, as students reach it) and --out CSV")
        links = people.issue_links(site.engine, args.url, args.items or None, new=args.new)
        if not links:
            print("no student needs a link (every active student has one; without --new, links are issued anew)")
            return 0
        people.write_links(links, Path(args.out))
        replaced = "" if args.new else " (each student's earlier link no longer works, nor its sessions)"
        print(f"wrote {count(len(links), 'sign-in link')} to {args.out}{replaced}; the links sign students in: send "
              "each only to its student, then delete the file")
    else:
        if not args.items:
            raise GraderError(f"roster {args.action} needs the student ids")
        for student in args.items:
            if args.action == "revoke":
                people.revoke(site.engine, student)
                print(f"revoked {student}: their link and sessions no longer work; their submissions stay "
                      f"(undo: roster restore {student})")
            else:
                people.restore(site.engine, student)
                print(f"restored {student}: they need a new link: python -m autograder roster links {student} "
                      "--url https://YOUR-SITE --out links.csv")
    return 0


def cmd_staff(args) -> int:
    import getpass

    from .site import people

    site = _site(args)
    if args.action == "add":
        if not args.username:
            raise GraderError("staff add needs a user name")
        if not args.password_stdin and not sys.stdin.isatty():     # getpass would warn and echo it
            raise GraderError("no terminal to ask for the password on: pipe it with --password-stdin (its first "
                              "line is the password), e.g. `... staff add prof --password-stdin < password.txt`")
        password = (sys.stdin.readline().rstrip("\r\n") if args.password_stdin
                    else getpass.getpass(f"password for {args.username}: "))
        people.add_staff(site.engine, args.username, password, args.role)
        print(f"{args.username} ({args.role}) can sign in at /staff/login")
    elif args.action == "remove":
        people.remove_staff(site.engine, args.username or "")
        print(f"removed {args.username}")
    else:
        for row in people.staff_accounts(site.engine):
            print(f"{row.username}  {row.role}")
    return 0


def cmd_lti(args) -> int:
    """The site as an LTI 1.3 tool of an LMS (README: "LMS (LTI 1.3)"): a platform registered by hand, the
    registrations listed, the tool's keys rotated."""
    from .site import lti, lti_store

    site = _site(args, public_url=args.public_url or "https://YOUR-SITE")
    if args.action == "register":
        missing = [f"--{n.replace('_', '-')}" for n in ("issuer", "client_id", "auth_url", "token_url", "jwks_url")
                   if not getattr(args, n)] + ([] if args.deployment else ["--deployment"])
        if missing:
            raise GraderError(f"lti register needs {', '.join(missing)} (the LMS's tool registration page shows them)")
        urls = {n: lti.check_url(getattr(args, n), f"--{n.replace('_', '-')}") for n in ("auth_url", "token_url",
                                                                                           "jwks_url")}
        lti.check_url(args.issuer, "--issuer")
        lti_store.register(site.engine, args.issuer, args.client_id, deployments=args.deployment,
                           name=args.name or "", **urls)
        print(f"registered {args.issuer} (client {args.client_id}, deployments {', '.join(args.deployment)}); give "
              f"the LMS: login URL {site.public_url}/lti/login, redirect (launch) URL {site.public_url}/lti/launch, "
              f"keyset URL {site.public_url}/lti/jwks")
    elif args.action == "platforms":
        for r in lti_store.registrations(site.engine):
            print(f"{r.issuer}  client {r.client_id}  deployments {', '.join(sorted(r.deployments)) or '-'}  "
                  f"auth {r.auth_url}  token {r.token_url}  keys {r.jwks_url}")
    elif args.action == "push":
        from .site import lti_services

        if not args.assignment:
            from .course.assignment import assignment_ids

            known = ", ".join(assignment_ids(site.config)) or "none"
            raise GraderError(f"lti push needs the assignment (lti push ID): one of {known}")
        site.config_for(args.assignment)
        if not site.released_feedback(args.assignment):
            raise GraderError(f"{args.assignment}'s feedback is not released: scores go to the LMS with the release "
                              "(the site's assignment page)")
        queued = lti_services.queue_assignment(site, args.assignment)
        again = lti_store.send_again(site.engine, args.assignment)
        counts = lti_services.send_due(site, lti.AccessTokens(site.data))
        print(f"{args.assignment}: {queued} score(s) changed, {again} to send: {counts['sent']} sent, "
              f"{counts['later']} put off (the LMS did not answer, or asked to wait: the site tries again), "
              f"{counts['failed']} refused by the LMS (their reasons: /staff/a/{args.assignment}/lms)")
        return 1 if counts["failed"] else 0
    elif args.action == "sync-roster":
        from .site import lti_services

        counts = lti_services.sync_roster(site)
        print("roster from the LMS: " + (", ".join(f"{n} {how}" for how, n in sorted(counts.items())) or
                                         "no course link with a roster service yet (open the tool from the LMS)"))
    elif args.action == "registration-url":
        from .site.lti_registration import KEY_HOURS, registration_url

        if not (args.public_url or "").startswith("https://"):
            raise GraderError("lti registration-url needs --public-url https://YOUR-SITE (the address the LMS reaches)")
        print(f"{registration_url(site)}\npaste it into the LMS's dynamic registration (Moodle: Site administration → "
              f"Plugins → Activity modules → External tool → Manage tools → Tool URL); it works once, within "
              f"{KEY_HOURS} hours")
    elif args.action == "rotate-keys":
        kid, removed = lti.rotate_keys(site.data)
        print(f"new signing key {kid}; published at /lti/jwks with the one before it"
              + (f"; removed {', '.join(removed)}" if removed else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    config_help = "path to grader_config.py (default: the project's, or $AUTOGRADER_CONFIG)"
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    parser.add_argument("--config", help=config_help)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="the course's assignments: id, title, deadline, released? published?")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("release", help="write the student notebook from the reference (nbgrader preprocessors)")
    p.add_argument("assignment", help="assignment id: its folder's name under reference/ (`list` shows them)")
    p.set_defaults(run=cmd_release)
    assignment_help = ("the assignment (default: what the notebook's release metadata, its exchange folder or its "
                       "name says; needed only when none does)")

    p = sub.add_parser("grade", help="grade one notebook, or a whole class (a folder of submissions or an LMS .zip)")
    p.add_argument("notebook", metavar="SUBMISSION",
                   help="a submitted .ipynb; or a folder (nbgrader's submitted/ or inbound/ layout, or an LMS "
                        "export with a CSV manifest) or an LMS .zip")
    p.add_argument("--out", help="one notebook: its folder (default: grades/single/<notebook name>), with "
                                 "results.json and feedback.html; a class: the folder of the course's grades "
                                 "(default: grades), each assignment into OUT/<assignment>/ with gradebook.csv, "
                                 "results/, feedback/, logs/, summary.html")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the student's model trains (default: auto — the GPU if one is visible)")
    p.add_argument("--workers", type=int, help="notebooks graded at once, each in its own kernel (default: one per "
                                              "CPU core, plus one when training on the CPU; on Ray, what the "
                                              "cluster runs at once; on Slurm, per array task)")
    p.add_argument("--regrade", action="store_true",
                   help="grade again even what is unchanged (from the stored runs: the graders only, no kernel)")
    p.add_argument("--rerun", action="store_true",
                   help="execute every notebook graded again, even where a stored run could be regraded")
    p.add_argument("--only", nargs="+", metavar="STUDENT",
                   help="grade only these students of the class (again, from their stored runs where sound); every "
                        "other student's files are left exactly as they are")
    p.add_argument("--exact-fit", action="store_true",
                   help="run the student's fit with Keras's own loop (no speed mode, FUSED_FIT_STEPS ignored)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--roster", metavar="CSV",
                   help="the students expected (a roster CSV, as `roster import` reads it): each one who handed "
                        "nothing in gets a gradebook row (no submission, 0 points) and a page saying so")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where a class's notebooks run: this machine's worker pool (default), a Ray cluster, or a "
                        "Slurm cluster (job arrays through submitit); README: Grading on a cluster")
    p.add_argument("--address", help="ray: the cluster's address, e.g. 10.0.0.1:6379 (default: $RAY_ADDRESS, the "
                                     "cluster `ray start` made on this machine, else a local one)")
    p.add_argument("--kernels-per-gpu", type=int, help="ray, slurm: kernels sharing a GPU (KERNELS_PER_GPU)")
    p.add_argument("--partition", help="slurm: the partition (SLURM_PARTITION)")
    p.add_argument("--gpus-per-task", type=int, help="slurm: GPUs per array task (SLURM_GPUS_PER_TASK)")
    p.add_argument("--array-parallelism", type=int, help="slurm: array tasks at once (SLURM_ARRAY_PARALLELISM)")
    p.add_argument("--chunk-size", type=int, help="slurm: submissions per array task (SLURM_CHUNK_SIZE)")
    p.add_argument("--assignment", help=assignment_help + "; for a class, grade only this one of those it holds")
    p.add_argument("--worksheet", metavar="CSV",
                   help="with Moodle's or Canvas's 'download all submissions' zip: its grading worksheet (Moodle) "
                        "or gradebook CSV (Canvas), which names each participant's student id (and, Moodle's, the "
                        "submission times); the files to upload back are written to OUT/<assignment>/lms/")
    p.set_defaults(run=cmd_grade)

    p = sub.add_parser("similarity", help="staff: which students' notebooks are similar, and on what evidence "
                                          "(code only they wrote, identical run outputs, file history); runs nothing")
    p.add_argument("submissions", metavar="SUBMISSIONS",
                   help="the class, as grade reads it: a folder (nbgrader's submitted/ or inbound/ layout, an LMS "
                        "export) or an LMS .zip; each student's latest notebook")
    p.add_argument("--out", required=True, help="the folder for similarity.json and similarity.html (staff only)")
    p.add_argument("--assignment", help="the assignment (default: what the class's layout names)")
    p.add_argument("--against", nargs="+", metavar="PAST",
                   help="past cohorts' submissions of the same assignment (folders or zips, one per cohort): each "
                        "student is compared with them too; pairs inside a past cohort are not")
    p.add_argument("--worksheet", metavar="CSV",
                   help="with Moodle's or Canvas's zip: its grading worksheet or gradebook CSV (the student ids)")
    p.set_defaults(run=cmd_similarity)

    p = sub.add_parser("lms", help="instructors: the files to upload to Moodle or Canvas from a graded class (grading "
                                   "worksheet + feedback zip, or gradebook import CSV)")
    p.add_argument("folder", metavar="FOLDER", help="the graded class: grades/<assignment>")
    p.add_argument("--worksheet", required=True, metavar="CSV",
                   help="the LMS's file as downloaded: Moodle's grading worksheet or Canvas's gradebook export")
    p.set_defaults(run=cmd_lms)

    p = sub.add_parser("check", help="students: run your notebook as the grader would and see the public checks")
    p.add_argument("notebook")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="default auto: the GPU if one is visible, else the CPU")
    p.add_argument("--assignment", help=assignment_help)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("submit", help="students: hand in your notebook before the deadline")
    p.add_argument("notebook")
    p.add_argument("--student", required=True, help="your student id")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="submit even though some answer cells still raise NotImplementedError")
    p.add_argument("--exchange", help="the exchange folder (default: EXCHANGE_DIR in grader_config.py)")
    p.add_argument("--assignment", help=assignment_help)
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser("publish", help="TAs: publish the solution after the deadline")
    p.add_argument("assignment")
    p.add_argument("--out", help="output folder (default: PUBLISH_DIR/<assignment> from grader_config.py)")
    p.add_argument("--force", action="store_true", help="publish even before the deadline")
    p.add_argument("--withhold-extended", action="store_true",
                   help="publish while some students' extended deadlines are open: the site shows each of them the "
                        "solution only after their own deadline")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(run=cmd_publish)

    p = sub.add_parser("extension", help="instructors: a student's own deadline for an assignment (公欠, illness, an "
                                         "accommodation), read by submit, grade, publish and the site")
    p.add_argument("action", choices=("add", "list", "remove"))
    p.add_argument("items", nargs="*", help="add, remove: STUDENT ASSIGNMENT; list: [ASSIGNMENT]")
    p.add_argument("--until", help="add: the student's deadline, with its offset, e.g. 2024-05-23T23:59+09:00")
    p.add_argument("--reason", help="add: why (kept in EXTENSIONS_FILE, shown to instructors only)")
    p.add_argument("--by", help="add: who grants it (default: your user name)")
    p.add_argument("--roster", metavar="CSV", help="add: the roster the student must be on (default: the site's, "
                                                   "when the course has one)")
    p.set_defaults(run=cmd_extension)

    p = sub.add_parser("demo", help="grade an assignment's reference, untouched student notebook and a wrong sample")
    p.add_argument("assignment", nargs="?", help="assignment id (default: every assignment in turn)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("store", help="instructors: the runs kept for regrading — their sizes (du), or remove "
                                     "those no result refers to any more (gc)")
    p.add_argument("action", choices=("du", "gc"))
    p.add_argument("--out", required=True,
                   help="the output folder of `grade … --out DIR` (a class's or one notebook's), or a folder of them")
    p.set_defaults(run=cmd_store)

    p = sub.add_parser("gradebook", help="instructors: join the assignments' gradebooks into the course's")
    p.add_argument("folders", nargs="*", metavar="FOLDER",
                   help="folders holding graded classes (default: grades/); each gradebook.csv found counts")
    p.add_argument("--out", default=str(GRADES / "course.csv"),
                   help="the course gradebook to write (default: grades/course.csv, beside the classes: student "
                        "data, kept out of the checkout's files)")
    p.set_defaults(run=cmd_gradebook)
    data_help = "the site's data folder (default: SITE_DIR in grader_config.py)"
    db_help = "the database URL (default: SQLite in the data folder; e.g. postgresql+psycopg://user@host/autograder)"
    p = sub.add_parser("serve", help="run the submission site: students upload from a browser, staff grade and "
                                     "publish")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: put a TLS proxy "
                                                       "in front, see README)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data", help=data_help)
    p.add_argument("--db", help=db_help)
    p.add_argument("--public-url", help="the address students use (https://… makes the session cookie Secure)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where public checks and jobs train")
    p.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                   help="proxies whose X-Forwarded-* headers are trusted (default: 127.0.0.1)")
    p.add_argument("--rehearse", metavar="TIME",
                   help="try the site with its clock running from TIME (ISO 8601 with an offset, e.g. "
                        "2024-05-16T20:00+09:00): before a deadline long past, or just after one; pages say so")
    p.add_argument("--unsafe-without-sandbox", action="store_true",
                   help="UNSAFE, a private test machine only: run students' notebooks even where the sandbox cannot "
                        "run (they could then read the site's key, the hidden graders and every submission)")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("roster", help="the site's students: import a roster CSV, write sign-in links, revoke one, "
                                      "restore one")
    p.add_argument("action", choices=("import", "links", "revoke", "restore"))
    p.add_argument("items", nargs="*", metavar="CSV|ID",
                   help="import: the roster CSV (student id, name, e-mail; an LMS's headers work); links: only these "
                        "students (default: all); revoke: the students whose links and sessions end; restore: "
                        "revoked students let back in (each then needs a new link)")
    p.add_argument("--url", help="links: the site's address as students reach it, e.g. https://grader.example.ac.jp")
    p.add_argument("--out", help="links: the CSV to write (student_id, name, email, link) for a mail merge")
    p.add_argument("--new", action="store_true",
                   help="links: only the students who have no link yet (added by a later import)")
    p.add_argument("--data", help=data_help)
    p.add_argument("--db", help=db_help)
    p.set_defaults(run=cmd_roster)

    p = sub.add_parser("staff", help="the site's staff accounts (instructors, TAs)")
    p.add_argument("action", choices=("add", "remove", "list"))
    p.add_argument("username", nargs="?")
    p.add_argument("--role", choices=("instructor", "ta"), default="ta")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from stdin's first line, for a script or a pipe (default: asked on the "
                        "terminal, not shown)")
    p.add_argument("--data", help=data_help)
    p.add_argument("--db", help=db_help)
    p.set_defaults(run=cmd_staff)
    p = sub.add_parser("lti", help="the site as an LTI 1.3 tool of an LMS (Moodle, Canvas): register a platform by "
                                   "hand or make a dynamic registration URL, list them, push an assignment's "
                                   "scores, sync the roster, rotate the tool's keys")
    p.add_argument("action", choices=("register", "registration-url", "platforms", "push", "sync-roster",
                                      "rotate-keys"))
    p.add_argument("assignment", nargs="?", help="push: the assignment whose scores go to the LMS now")
    p.add_argument("--issuer", help="register: the LMS's issuer (e.g. https://moodle.example.ac.jp)")
    p.add_argument("--client-id", help="register: the client id the LMS gave the tool")
    p.add_argument("--deployment", action="append", default=[], metavar="ID",
                   help="register: a deployment id the LMS gave (repeat for several)")
    p.add_argument("--auth-url", help="register: the LMS's OIDC authentication (authorization) URL")
    p.add_argument("--token-url", help="register: the LMS's access token URL")
    p.add_argument("--jwks-url", help="register: the LMS's public keyset URL")
    p.add_argument("--name", help="register: a name for staff pages")
    p.add_argument("--public-url", help="the site's address, as the LMS reaches it (https://…): the URLs printed")
    p.add_argument("--data", help=data_help)
    p.add_argument("--db", help=db_help)
    p.set_defaults(run=cmd_lti)
    for p in sub.choices.values():       # --config after the subcommand too; SUPPRESS keeps one given before it
        p.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Refusal as exc:
        print(f"autograder: refused: {exc}", file=sys.stderr)
        return 1
    except GraderError as exc:
        print(f"autograder: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
