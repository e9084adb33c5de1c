"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium): what the browser drew, read back from uPlot's canvases, not the HTML the server sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import browser
from tests.conftest import wait_until
from tests.ui_fixtures import Clock, demo_store, log_steps, make_run, sdk_clock

pytest.importorskip("uplot", reason="the ui extra (uplot-python) is not installed")
if browser.missing():
    pytest.skip(browser.missing() or "", allow_module_level=True)

from tracklab.ui.server import Dashboard

pytestmark = pytest.mark.slow

HOSTILE = "<img src=x onerror=alert(1)>"

# Pixels of the chart's canvas within a small distance of each selected run's colour.
COUNT_COLOURS = """
const c = state.charts.get(arguments[0]);
const cv = c.u.ctx.canvas, img = c.u.ctx.getImageData(0, 0, cv.width, cv.height).data;
return c.runs.map(id => {
  const n = parseInt(colorOf(id).slice(1), 16), rgb = [n >> 16, (n >> 8) & 255, n & 255];
  let hits = 0;
  for (let i = 0; i < img.length; i += 4)
    if (img[i + 3] > 200 && Math.abs(img[i] - rgb[0]) + Math.abs(img[i + 1] - rgb[1]) + Math.abs(img[i + 2] - rgb[2]) < 40) hits++;
  return [id, hits];
});
"""
# Points the chart holds for each run (non-null values of its series).
POINTS = """
const c = state.charts.get(arguments[0]);
return c.runs.map((id, r) => [id, c.u.data[1 + r].filter(v => v !== null && v !== undefined).length]);
"""


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    d = browser.chrome()
    yield d
    d.quit()




def open_page(driver: Any, server: Dashboard, hash_: str = "#/runs") -> None:
    driver.get(server.url + hash_)
    driver.execute_script("localStorage.clear()")
    driver.get(server.url + "?fresh=1" + hash_)
    wait_until(lambda: driver.execute_script("return state.runs.length > 0 || "
                                             "document.getElementById('live').textContent !== ''"),
               "the runs to load", 30)


def table_ids(driver: Any) -> list[str]:
    return list(driver.execute_script(
        "return [...document.querySelectorAll('#runs-table tbody tr')].map(r => r.dataset.run)"))


def select_on_runs_page(driver: Any, ids: list[str]) -> None:
    from selenium.webdriver.common.by import By

    for rid in ids:
        driver.find_element(By.CSS_SELECTOR, f'tr[data-run="{rid}"] input[type=checkbox]').click()
    driver.find_element(By.ID, "compare").click()
    wait_until(lambda: driver.execute_script("return state.drawn === true"), "charts drawn", 30)


def test_runs_page_lists_the_stores_runs(driver: Any, served: Dashboard, store_dir: Path) -> None:
    ids = demo_store(str(store_dir), runs=5, steps=100)
    open_page(driver, served)
    wait_until(lambda: len(table_ids(driver)) == 5, "five rows", 30)
    assert table_ids(driver) == list(reversed(ids))  # newest first
    text = driver.execute_script("return document.getElementById('runs-table').innerText")
    assert "resnet50-baseline" in text and "finished" in text and "baseline" in text
    # filtering by project and free text
    driver.execute_script("state.filter.project = 'sweep'; drawTable()")
    assert len(table_ids(driver)) == 2
    driver.execute_script("state.filter.project = ''; state.filter.text = 'vit'; drawTable()")
    assert len(table_ids(driver)) == 2


def test_selecting_three_runs_draws_their_curves(driver: Any, served: Dashboard,
                                                 store_dir: Path) -> None:
    ids = demo_store(str(store_dir), runs=4, steps=400)
    open_page(driver, served)
    wait_until(lambda: len(table_ids(driver)) == 4, "four rows", 30)
    chosen = [ids[0], ids[2], ids[3]]
    select_on_runs_page(driver, chosen)
    assert driver.execute_script("return location.hash") == "#/charts"
    charts = driver.execute_script("return [...state.charts.keys()]")
    assert "train/loss" in charts and "val/loss" in charts and "sys:accelerators.0.utilization" in charts
    for key in ("train/loss", "sys:cpu.overall"):
        points = dict(driver.execute_script(POINTS, key))
        assert set(points) == set(chosen)
        assert all(n >= 30 for n in points.values()), points
        drawn = dict(driver.execute_script(COUNT_COLOURS, key))
        assert all(hits >= 30 for hits in drawn.values()), (key, drawn)
    # an unselected run is not drawn
    assert ids[1] not in driver.execute_script("return state.charts.get('train/loss').runs")
    # the x axis: wall time (epoch seconds), then seconds since each run's start
    xs = "const d = state.charts.get(arguments[0]).u.data[0]; return [d[0], d[d.length - 1]]"
    for axis, lo, hi in (("time", 1_780_000_000, 1_780_000_000 + 4 * 7200),
                         ("relative", 0, 400 * 3.6)):
        driver.execute_script(f"const s = document.getElementById('axis'); s.value = '{axis}';"
                              "s.dispatchEvent(new Event('change'))")
        wait_until(lambda axis=axis: driver.execute_script(
            f"return state.axis === '{axis}' && state.drawn === true"), f"the {axis} axis", 30)
        wait_until(lambda lo=lo, hi=hi: all(
            lo <= x <= hi for k in ("train/loss", "sys:cpu.overall")
            for x in driver.execute_script(xs, k)), f"x in [{lo}, {hi}]", 30)
    driver.execute_script("const s = document.getElementById('axis'); s.value = 'step';"
                          "s.dispatchEvent(new Event('change'))")


def test_a_running_runs_new_points_appear_without_a_reload(driver: Any, served: Dashboard,
                                                          store_dir: Path) -> None:
    import random


    run = make_run(str(store_dir), "live", steps=50, keys=2, samples=False, finish=False,
                   started=1_780_000_000.0)
    open_page(driver, served, f"#/charts?runs={run.id}")
    wait_until(lambda: driver.execute_script("return state.drawn === true"), "charts drawn", 30)
    driver.execute_script("window.__sameDocument = 1")
    before = dict(driver.execute_script(POINTS, "train/loss"))[run.id]
    clock = Clock(0)
    with sdk_clock(clock):
        log_steps(run, clock, 50, 300, random.Random(1), 0, 2, 1_780_000_000.0, 3.6)
    run.flush()
    wait_until(lambda: dict(driver.execute_script(POINTS, "train/loss"))[run.id] > before + 100,
               "the new points drawn", 30)
    assert driver.execute_script("return window.__sameDocument") == 1  # no reload
    assert driver.execute_script("return Math.max(...state.charts.get('train/loss').u.data[0])") == 299
    # the last points come with the run's end: they are drawn although it no longer runs
    with sdk_clock(clock):
        log_steps(run, clock, 300, 320, random.Random(2), 0, 2, 1_780_000_000.0, 3.6)
        run.finish()
    last = "return Math.max(...state.charts.get('train/loss').u.data[0])"
    wait_until(lambda: driver.execute_script(last) == 319, "the final points drawn", 30)


def test_a_hostile_run_name_renders_as_text(driver: Any, served: Dashboard, store_dir: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    run = make_run(str(store_dir), HOSTILE, steps=30, keys=1, tags=[HOSTILE],
                   config={"<b>k</b>": "<script>alert(2)</script>"})
    open_page(driver, served)
    wait_until(lambda: len(table_ids(driver)) == 1, "the row", 30)
    name = driver.execute_script(
        "return document.querySelector('#runs-table tbody td.name').textContent")
    assert name == HOSTILE
    driver.execute_script(f"location.hash = '#/run/{run.id}'")
    page = "const h = document.querySelector('#view .panel h3'); return h && h.textContent"
    wait_until(lambda: (driver.execute_script(page) or "").startswith(HOSTILE), "the run page", 30)
    assert "<script>alert(2)</script>" in driver.execute_script(
        "return document.getElementById('view').textContent")
    driver.execute_script(f"state.selected = ['{run.id}']; location.hash = '#/charts'")
    wait_until(lambda: driver.execute_script(
        "return document.getElementById('sidebar') !== null && state.drawn === true"),
        "charts drawn", 30)
    sidebar = driver.execute_script("return document.getElementById('sidebar').textContent")
    assert HOSTILE in sidebar
    assert driver.execute_script("return document.querySelectorAll('img, main script').length") == 0
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018  (reading it is the check)


def test_a_corrupt_shard_shows_a_banner_and_the_other_runs(driver: Any, served: Dashboard,
                                                          store_dir: Path) -> None:
    ids = demo_store(str(store_dir), runs=2, steps=30)
    (store_dir / "node-broken.db").write_bytes(b"garbage" * 500)
    open_page(driver, served)
    wait_until(lambda: len(table_ids(driver)) == 2, "both rows", 30)
    assert sorted(table_ids(driver)) == sorted(ids)
    banner = driver.execute_script(
        "const b = document.getElementById('banner'); return [b.hidden, b.textContent]")
    assert banner[0] is False and "node-broken.db" in banner[1] and "left out" in banner[1]


def test_zoom_asks_the_server_for_the_range(driver: Any, served: Dashboard, store_dir: Path) -> None:
    run = make_run(str(store_dir), "long", steps=20_000, keys=1, samples=False, spike_at=12_345)
    open_page(driver, served, f"#/charts?runs={run.id}")
    wait_until(lambda: driver.execute_script("return state.drawn === true"), "charts drawn", 30)
    in_range = ("return state.charts.get('train/loss').u.data[0]"
                ".filter(x => x >= 12000 && x <= 12600).length")
    overview = driver.execute_script(in_range)
    assert driver.execute_script("return Math.max(...state.charts.get('train/loss').u.data[1])") == 50
    driver.execute_script("state.charts.get('train/loss').u.setScale('x', {min: 12000, max: 12600})")
    wait_until(lambda: driver.execute_script(
        "const d = state.charts.get('train/loss').u.data[0]; return d[0] >= 12000 && d[d.length - 1] <= 12600"),
        "the zoomed range's points", 30)
    zoomed = driver.execute_script(in_range)
    # the overview holds about one point in 15 there; the zoom about one per pixel
    assert overview < 100 and zoomed > 300, (overview, zoomed)


def test_a_new_run_and_a_running_runs_row_update_without_a_reload(driver: Any, served: Dashboard,
                                                                 store_dir: Path) -> None:
    import random


    live = make_run(str(store_dir), "live", steps=20, keys=1, samples=False, finish=False,
                    started=1_780_000_000.0)
    open_page(driver, served)
    wait_until(lambda: table_ids(driver) == [live.id], "the running run's row", 30)
    driver.execute_script("window.__sameDocument = 1")
    cell = ("const r = state.byId.get(arguments[0]); return r && r.metrics['train/loss'] !== undefined"
            " ? document.querySelector(`tr[data-run='${arguments[0]}']`).textContent : null")
    before = driver.execute_script(cell, live.id)
    assert "running" in before
    clock = Clock(0)
    with sdk_clock(clock):
        log_steps(live, clock, 20, 40, random.Random(7), 3, 1, 1_780_000_000.0, 3.6)
    live.flush()
    wait_until(lambda: driver.execute_script(cell, live.id) != before, "the row to update", 30)
    other = make_run(str(store_dir), "newcomer", steps=10, keys=1, samples=False)
    wait_until(lambda: other.id in table_ids(driver), "the new run's row", 30)
    assert driver.execute_script("return window.__sameDocument") == 1
    live.finish()
    wait_until(lambda: "finished" in driver.execute_script(cell, live.id), "the status change", 30)


def test_a_selected_run_that_is_gone_is_left_out(driver: Any, served: Dashboard,
                                                 store_dir: Path) -> None:
    (rid,) = demo_store(str(store_dir), runs=1, steps=50)
    open_page(driver, served, f"#/charts?runs=gone1234,{rid}")
    wait_until(lambda: driver.execute_script("return state.drawn === true && state.charts.size > 0"),
               "charts drawn", 30)
    assert driver.execute_script("return state.charts.get('train/loss').runs") == [rid]
    assert dict(driver.execute_script(POINTS, "train/loss"))[rid] >= 30
