import io

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ccaug.progress import LineProgress, progress_bar

COLUMNS = (TextColumn("images"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[ips]:.1f} img/s"))


def console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120), out


def test_a_log_file_gets_plain_lines_with_counts_and_fields_but_no_bar():
    log, out = console(terminal=False)
    with progress_bar(*COLUMNS, console=log, every=0.0) as bar:
        task = bar.add_task("images", total=3, ips=0.0)
        for done in range(1, 4):
            bar.update(task, completed=done, ips=2.5)
    assert out.getvalue().splitlines() == ["images 1/3 2.5 img/s", "images 2/3 2.5 img/s", "images 3/3 2.5 img/s"]


def test_lines_are_throttled_but_the_first_and_the_finished_one_are_always_written():
    log, out = console(terminal=False)
    with progress_bar(TextColumn("[bold]crop[/]"), MofNCompleteColumn(), console=log, every=3600.0) as bar:
        task = bar.add_task("crop", total=5)
        for _ in range(5):
            bar.advance(task)
        bar.advance(task, 0)  # updates after the end write nothing more
    assert out.getvalue().splitlines() == ["crop 1/5", "crop 5/5"]


def test_the_eta_is_estimated_from_updates_further_apart_than_rich_s_30_seconds():
    log, out = console(terminal=False)
    now = [0.0]
    with progress_bar(TextColumn("synth"), MofNCompleteColumn(), TimeRemainingColumn(), console=log, every=0.0) as bar:
        bar.get_time = lambda: now[0]  # rich's clock for speed estimates: one batch every 90 s
        task = bar.add_task("images", total=4)
        for done in range(1, 4):
            now[0] += 90.0
            bar.update(task, completed=done)
    assert out.getvalue().splitlines()[-1] == "synth 3/4 0:01:30"


def test_disabled_progress_writes_nothing_and_a_terminal_gets_rich_s_live_bar():
    log, out = console(terminal=False)
    with progress_bar(*COLUMNS, console=log, enabled=False) as bar:
        bar.update(bar.add_task("images", total=2, ips=0.0), completed=2)
    assert out.getvalue() == ""

    terminal, _ = console(terminal=True)
    live = progress_bar(*COLUMNS, console=terminal)
    assert type(live) is Progress and not isinstance(live, LineProgress)
    assert isinstance(progress_bar(*COLUMNS, console=console(terminal=False)[0]), LineProgress)
