"""Grading a class on a cluster: a real local Ray cluster (logical GPUs need no device) and Slurm through
submitit's local executor (no Slurm here). Each must give what the local pool gives, and keep its promises: a
runner's failure retried once and never a zero, a killed worker or job retried, a killed driver resumed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from classroom import (ON_TIME, always_lost, answer, chunk_killed_once, echo_process, exchange_submission, keeps_runs,
                       load_course, lost_once, parent_lost_once, short_config, works)

from autograder import PROJECT_ROOT
from autograder.classroom.batch import grade_batch
from autograder.classroom.executors import make_executor
from autograder.classroom.executors.node import CLUSTER_DIR, check_node, setup_for, shared_scratch
from autograder.classroom.executors.slurm import SlurmExecutor
from autograder.errors import GraderError

ray = pytest.importorskip("ray")
submitit = pytest.importorskip("submitit")

STUDENTS = ("s001", "s002", "s003", "s004", "s005")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs and 1 logical GPU, shared by this module's tests; → its address."""
    context = ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, object_store_memory=80 * 2**20,
                       log_to_driver=False, logging_level="WARNING")
    yield context.address_info["gcs_address"]
    ray.shutdown()


def a_class(folder: Path, students: int):
    for epochs, student in enumerate(STUDENTS[:students], start=1):      # each a different notebook
        exchange_submission(folder / "class", student, answer(epochs=epochs), ON_TIME)
    return folder / "class", load_course(short_config(folder))


@pytest.fixture
def five_students(tmp_path):
    return a_class(tmp_path, 5)


@pytest.fixture
def two_students(tmp_path):
    return a_class(tmp_path, 2)


def grade(source, out, config, executor=None, **options):
    options = {"device": "cpu", "progress": False, "grade_fn": works, **options}
    return grade_batch(source, out, config, executor=executor, **options)


def local_slurm(**options):
    """Slurm's executor on submitit's local cluster: each array task is a process on this machine."""
    return SlurmExecutor(cluster="local", poll_s=0.5, gpus_per_task=0, **options)


def stable(result: dict) -> dict:
    """A result without what differs between two runs of the same grading (when, and the run's wall time)."""
    return {k: v for k, v in result.items() if k not in ("graded_at",)}


# --- real notebooks ----------------------------------------------------------------------------------------------

@pytest.mark.training
def test_real_notebooks_get_the_same_grades_on_the_pool_on_ray_and_on_slurm(tmp_path, ray_cluster):
    """The real grading (sandboxed kernels, the dataset files and snapshot in the batch's shared folder, the
    store) through each executor: the same gradebook, and the same verdict on every check."""
    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    exchange_submission(tmp_path / "class", "s002", answer(normalise=False), ON_TIME)      # forgot / 255
    config = load_course(short_config(tmp_path))
    options = {"device": "cpu", "progress": False}
    reports = {"local": grade_batch(tmp_path / "class", tmp_path / "local", config, workers=2, **options),
               "ray": grade_batch(tmp_path / "class", tmp_path / "ray", config, executor=make_executor("ray"),
                                  **options),
               "slurm": grade_batch(tmp_path / "class", tmp_path / "slurm", config, workers=2,
                                    executor=local_slurm(chunk_size=2), **options)}
    books = {name: (tmp_path / name / "gradebook.csv").read_text(encoding="utf-8") for name in reports}
    assert books["ray"] == books["local"] == books["slurm"], books
    verdicts = {name: {s: [(t["name"], t["status"]) for t in r["tests"]] for s, r in report.written.items()}
                for name, report in reports.items()}
    assert verdicts["ray"] == verdicts["local"] == verdicts["slurm"]
    assert reports["local"].written["s001"]["score"] == reports["local"].written["s001"]["max_score"]
    assert dict(verdicts["local"]["s002"])["reshape"] == "failed"
    assert all(report.executed == 2 for report in reports.values())


# --- Ray --------------------------------------------------------------------------------------------------------

def test_ray_gives_the_local_pools_gradebook_results_and_store(tmp_path, five_students, ray_cluster):
    source, config = five_students
    local = grade(source, tmp_path / "local", config, workers=2, grade_fn=keeps_runs)
    on_ray = grade(source, tmp_path / "ray", config, make_executor("ray", address=ray_cluster), grade_fn=keeps_runs)
    assert on_ray.executed == local.executed == 5
    assert (tmp_path / "ray" / "gradebook.csv").read_bytes() == (tmp_path / "local" / "gradebook.csv").read_bytes()
    assert {s: stable(r) for s, r in on_ray.written.items()} == {s: stable(r) for s, r in local.written.items()}
    assert sorted(p.name for p in (tmp_path / "ray" / "feedback").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "feedback").iterdir())
    assert not (tmp_path / "ray" / CLUSTER_DIR).exists()          # the batch's shared folder is removed after it
    # the runs the nodes kept are in the store: the next run judges them again without executing anything
    again = grade(source, tmp_path / "ray", config, make_executor("ray"), grade_fn=keeps_runs, regrade=True)
    assert (again.regraded, again.executed) == (5, 0)
    assert {r["notes"][0] for r in again.written.values()} == {"regraded, intact=True"}


def test_a_ray_worker_keeps_its_grading_process_for_the_tasks_it_runs_in_turn(tmp_path, five_students, ray_cluster):
    """Keras, the graders and the dataset loaded once per Ray worker, not once per submission."""
    source, config = five_students
    report = grade(source, tmp_path / "out", config, make_executor("ray"), grade_fn=echo_process)
    processes = {r["notes"][0] for r in report.written.values()}
    assert len(processes) < 5 and {r["status"] for r in report.written.values()} == {"graded"}


def test_a_killed_ray_worker_is_run_again_by_ray_and_the_row_is_right(tmp_path, two_students, ray_cluster):
    source, config = two_students
    report = grade(source, tmp_path / "out", config, make_executor("ray"), grade_fn=parent_lost_once)
    assert {r["status"] for r in report.written.values()} == {"graded"}
    killed = [s for s, r in report.written.items() if r["attempts"] == 2]
    assert len(killed) == 2           # each notebook differs: each one's first Ray worker was killed
    log = (tmp_path / "out" / "logs" / "s002.log").read_text(encoding="utf-8")
    assert "attempt 1 failed: Ray worker lost: Ray ran the task again" in log
    assert f"graded on node {socket.gethostname()}" in log


def test_a_lost_grading_process_is_retried_once_then_an_infrastructure_error(tmp_path, two_students, ray_cluster):
    source, config = two_students
    retried = grade(source, tmp_path / "once", config, make_executor("ray"), grade_fn=lost_once)
    assert {(r["status"], r["attempts"]) for r in retried.written.values()} == {("graded", 2)}
    lost = grade(source, tmp_path / "always", config, make_executor("ray"), grade_fn=always_lost)
    assert {r["status"] for r in lost.written.values()} == {"infrastructure error"}
    assert all(r["attempts"] == 2 and r["score"] is None and all(t["score"] is None for t in r["tests"])
               for r in lost.written.values())                    # no points given or taken
    assert lost.written["s001"]["infrastructure_reason"].endswith("the grading process was lost (exit code 3)")
    assert "logs/nodes/" in (tmp_path / "always" / "logs" / "s001.log").read_text(encoding="utf-8")
    # the runner fixed, the same command grades exactly those
    fixed = grade(source, tmp_path / "always", config, make_executor("ray"))
    assert fixed.executed == 2 and {r["status"] for r in fixed.written.values()} == {"graded"}


def test_gpu_kernels_ask_ray_for_a_share_of_a_gpu(tmp_path, two_students, ray_cluster, capsys):
    """The cluster's one logical GPU makes --device auto choose the GPU; each task gets it through
    CUDA_VISIBLE_DEVICES (two kernels per GPU), and a node whose TensorFlow then sees no GPU (none is here)
    is a runner's failure, never a zero."""
    source, config = two_students
    executor = make_executor("ray", kernels_per_gpu=2)
    report = grade(source, tmp_path / "out", config, executor, device="auto", progress=True)
    assert "on gpu" in capsys.readouterr().err and executor.default_workers("gpu", True) == 2
    reasons = {r["infrastructure_reason"] for r in report.written.values()}
    assert all("CUDA_VISIBLE_DEVICES=0) but TensorFlow sees none there" in why for why in reasons), reasons
    assert {(r["status"], r["attempts"]) for r in report.written.values()} == {("infrastructure error", 2)}


def test_a_rerun_after_the_driver_is_killed_resumes(tmp_path, five_students, ray_cluster):
    source, config = five_students
    driver = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(PROJECT_ROOT)!r}, {str(Path(__file__).parent)!r}]
        from autograder.classroom.batch import grade_batch
        from autograder.classroom.executors import make_executor
        from classroom import load_course, slow_works
        grade_batch({str(source)!r}, {str(tmp_path / 'out')!r}, load_course({str(config.source)!r}), device="cpu",
                    progress=False, grade_fn=slow_works, executor=make_executor("ray", address={ray_cluster!r}))
    """)
    process = subprocess.Popen([sys.executable, "-c", driver], cwd=tmp_path, start_new_session=True)
    results = tmp_path / "out" / "results"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(results.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)            # the driver, without a chance to tidy up
    process.wait()
    kept = {p.stem for p in results.glob("*.json")}
    assert 2 <= len(kept) < 5
    left = list((tmp_path / "out" / CLUSTER_DIR).iterdir())
    assert len(left) == 1                             # the killed driver's shared folder
    resumed = grade(source, tmp_path / "out", config, make_executor("ray", address=ray_cluster))
    assert resumed.reused == len(kept) and resumed.executed == 5 - len(kept)
    assert not left[0].exists()                       # removed by the next batch
    assert len((tmp_path / "out" / "gradebook.csv").read_text(encoding="utf-8").splitlines()) == 6


def test_a_node_that_does_not_see_the_output_folder_says_so(tmp_path, two_students):
    _, config = two_students
    with shared_scratch(tmp_path / "out") as scratch:
        setup = setup_for(config, scratch, grade_fn=works, kernel_device="cpu", snapshot=None,
                          log_path=tmp_path / "out" / "logs" / "workers.log")
        assert check_node(setup) == ""
        (scratch / "driver-token").write_text("another batch", encoding="ascii")     # another mount at that path
        said = check_node(setup)
    assert "does not see this batch's output folder" in said and "holds another batch's token" in said
    assert "same path" in said
    assert "does not exist" in check_node(setup)


# --- Slurm (submitit's local executor) ----------------------------------------------------------------------------

def test_a_slurm_job_array_gives_the_local_pools_gradebook_with_logs_per_array_task(tmp_path, five_students):
    source, config = five_students
    local = grade(source, tmp_path / "local", config, workers=1, grade_fn=keeps_runs)
    slurm = grade(source, tmp_path / "slurm", config, local_slurm(chunk_size=2), grade_fn=keeps_runs)
    assert (tmp_path / "slurm" / "gradebook.csv").read_bytes() == (tmp_path / "local" / "gradebook.csv").read_bytes()
    assert {s: stable(r) for s, r in slurm.written.items()} == {s: stable(r) for s, r in local.written.items()}
    tasks = sorted((tmp_path / "slurm" / "logs" / "slurm").iterdir())
    assert len(tasks) == 3                            # five submissions in chunks of two: three array tasks
    assert all((task / "workers.log").is_file() and list(task.glob("*_log.out")) for task in tasks)
    assert not (tmp_path / "slurm" / CLUSTER_DIR).exists()


def test_a_slurm_job_killed_mid_chunk_is_resubmitted_once_with_what_it_had_not_finished(tmp_path):
    source, config = a_class(tmp_path, 4)
    report = grade(source, tmp_path / "out", config, local_slurm(chunk_size=2), workers=1,
                   grade_fn=chunk_killed_once)
    assert {r["status"] for r in report.written.values()} == {"graded"}
    again = [s for s, r in report.written.items() if r["attempts"] == 2]
    assert len(again) == 1                   # the killed chunk's first notebook had been settled: not graded again
    log = (tmp_path / "out" / "logs" / f"{again[0]}.log").read_text(encoding="utf-8")
    job = re.search(r"attempt 1 failed: Slurm job (\S+) ended without a result \(UncompletedJobError", log)
    assert job and (tmp_path / "out" / "logs" / "slurm" / job[1] / "workers.log").is_file()    # its logs
    assert f"graded on node {socket.gethostname()}" in log
    assert len(list((tmp_path / "out" / "logs" / "slurm").iterdir())) == 3       # two array tasks + one resubmitted


def test_a_node_where_the_required_sandbox_cannot_start_is_an_infrastructure_error(tmp_path, monkeypatch):
    """SANDBOX = 'require' decides on each node: there, bwrap is missing (no PATH): the chunk fails in Python,
    is not resubmitted, and each of its students gets the node's reason — no zero."""
    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    config = load_course(short_config(tmp_path, SANDBOX="'require'"))
    monkeypatch.setenv("PATH", "")
    report = grade(tmp_path / "class", tmp_path / "out", config, local_slurm())
    result = report.written["s001"]
    assert (result["status"], result["attempts"]) == ("infrastructure error", 1), result["notes"]
    assert "SANDBOX = 'require'" in result["infrastructure_reason"] and "bwrap" in result["infrastructure_reason"]
    assert len(list((tmp_path / "out" / "logs" / "slurm").iterdir())) == 1       # not resubmitted


def test_a_slurm_output_folder_only_this_machine_sees_is_refused():
    """Refused before anything is written or submitted (the nodes check the rest: see check_node)."""
    out = Path("/tmp") / f"autograder-test-{os.getpid()}" / "out"
    with pytest.raises(GraderError, match="every node mounts at the same path") as refused:
        with SlurmExecutor(cluster="slurm").scratch(out):
            pass
    assert "under /tmp" in str(refused.value) and not out.parent.exists()


def test_options_for_another_executor_are_refused(tmp_path):
    with pytest.raises(GraderError, match="--partition is for --executor slurm, not ray"):
        make_executor("ray", partition="gpu")
    with pytest.raises(GraderError, match="--address is for --executor ray, not local"):
        make_executor("local", address="10.0.0.1:6379")
    with pytest.raises(GraderError, match="--chunk-size must be at least 1"):
        make_executor("slurm", chunk_size=0)
    if not shutil.which("sbatch"):        # here: no Slurm, and no silent fallback to running jobs on this machine
        with pytest.raises(GraderError, match="sbatch is not on this machine's PATH; run the command on the cluster"):
            make_executor("slurm").prepare(load_course(short_config(tmp_path)))
    exchange_submission(tmp_path / "class", "s001", answer(), ON_TIME)
    one = tmp_path / "class" / "submitted" / "s001" / "assignment3" / "assignment3.ipynb"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(one), "--executor", "ray"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--executor ray grades a class" in done.stderr
