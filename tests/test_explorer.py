"""The explorer page of the tiny run in a real browser: Debian's ``chromium`` and ``chromium-driver``
through Selenium (no browser download; ``.ci/run`` installs them with apt-get when missing).

The page opens from ``file://`` (and from a local static server) with no console error; moving the
step (keys and slider) moves every panel and every readout to that step, with the tables' numbers;
switching class redraws everything for that class and leaves no broken panel; a screenshot of it
is not blank. The builder itself is tested in process in tests/unit/test_explorer_build.py.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffxai.plots.explorer import nearest, page_size, read_data

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(DRIVER).is_file() and shutil.which("chromium")),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)

#: every panel's state, cursor step, shown step and a digest of its pixels
PANELS_JS = """
return Array.from(document.querySelectorAll('#panels [data-panel]')).map(function (f) {
  var c = f.querySelector('canvas'), h = 0, s = c ? c.toDataURL() : f.textContent;
  for (var i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return {id: f.getAttribute('data-panel'), cursor: f.getAttribute('data-cursor-step'),
          shown: f.getAttribute('data-shown-step'), t: f.getAttribute('data-shown-timestep'),
          state: f.getAttribute('data-state'), digest: h};
});
"""
READOUTS_JS = """
return Array.from(document.querySelectorAll('#readouts [data-readout]')).map(function (e) {
  return {key: e.getAttribute('data-readout'), step: e.getAttribute('data-step'), value: e.getAttribute('data-value')};
});
"""


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1400,1000")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the distribution's driver, named explicitly: Selenium Manager would try to download one
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


class Page:
    """The open page: waits, the panels, the readouts and the browser's console."""

    def __init__(self, driver):
        self.driver, self.log = driver, []

    def open(self, url: str, cls: str | None = None) -> None:
        self.driver.get(url)
        self.wait(cls)

    def wait(self, cls: str | None = None) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        def ready(d):
            body = d.find_element("tag name", "body")
            return body.get_attribute("data-ready") == "1" and (cls is None or body.get_attribute("data-class") == cls)

        WebDriverWait(self.driver, 30).until(ready)
        self.check_console()

    def check_console(self) -> None:
        self.log += self.driver.get_log("browser")
        severe = [e for e in self.log if e["level"] == "SEVERE"]
        assert not severe, f"console errors: {severe}"
        shown = self.driver.find_element("id", "error")
        assert not shown.is_displayed(), shown.text

    def panels(self) -> dict[str, dict]:
        return {p["id"]: p for p in self.driver.execute_script(PANELS_JS)}

    def readouts(self) -> dict[str, dict]:
        return {r["key"]: r for r in self.driver.execute_script(READOUTS_JS)}

    def keys(self, *keys) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(*keys).perform()
        self.check_console()

    def step(self) -> int:
        return int(self.driver.find_element("id", "step").get_attribute("value"))


@pytest.fixture(scope="module")
def page_dir(tiny_run) -> Path:
    return tiny_run / "explorer"


@pytest.fixture(scope="module")
def tables(tiny_run) -> dict[str, pd.DataFrame]:
    names = ("likelihood", "faithfulness", "saliency_stats", "schedule_steps")
    return {n: pd.read_parquet(tiny_run / "tables" / f"{n}.parquet") for n in names}


def expected_readouts(tables, cls: str, step: int, image_id: str, timesteps: list[int], data: dict) -> dict:
    """What the readouts must say at ``step`` for image ``image_id``, draw 0, saliency sample 0."""
    want = {}
    lik = tables["likelihood"]
    lik = lik[(lik["class_name"] == cls) & (lik["step"] == step)]
    for v, g in lik.groupby("view"):
        want[f"prob_mean:{v}"] = g["prob"].mean()
        want[f"prob:{v}"] = g[(g["image_id"] == image_id) & (g["draw"] == 0)]["prob"].item()
    fa = tables["faithfulness"]
    for m, entry in data["attribution"]["maps"].items():
        shown = entry["steps"][nearest(entry["timesteps"], timesteps[step])]
        sub = fa[(fa["class_name"] == cls) & (fa["method"] == m) & (fa["step"] == shown)]
        sub = sub[(sub["image_id"] == image_id) & (sub["draw"] == 0)]
        for r in sub.itertuples():
            want[f"attr:{m}:{r.view}:{r.metric}"] = r.value
    if data["saliency"]:
        st = tables["saliency_stats"]
        for m, entry in data["saliency"]["maps"].items():
            shown = entry["steps"][nearest(entry["timesteps"], timesteps[step])]
            row = st[(st["class_name"] == cls) & (st["method"] == m) & (st["step"] == shown)]
            row = row[(row["sample"] == 0) & (row["layer"] == "all")]
            want[f"sal:{m}:deletion_auc"] = row["deletion_auc"].item()
            want[f"sal:{m}:insertion_auc"] = row["insertion_auc"].item()
    ss = tables["schedule_steps"]
    for name, g in ss[ss["class_name"] == cls].groupby("schedule"):
        per = g.groupby("step").agg(prob=("prob", "mean"), timestep=("timestep", "first"))
        want[f"sched:{name}"] = per["prob"].iloc[nearest(per["timestep"].tolist(), timesteps[step])]
    return want


def check_step(page: Page, tables, data: dict, step: int, before: dict | None = None) -> dict:
    """Every panel and readout is at ``step`` and shows the tables' numbers there; with ``before``
    (the panels at another step), every panel whose shown step changed was redrawn."""
    cls, tr = data["name"], data["trajectory"]
    assert page.step() == step
    panels = page.panels()
    for pid, p in panels.items():
        assert p["cursor"] == str(step), (pid, p)
        assert p["state"] in ("ok", "nomap"), (pid, p)
    for v in tr["views"]:
        assert panels[f"traj:{v}"]["shown"] == str(step) and panels[f"traj:{v}"]["t"] == str(tr["timesteps"][step])
    for m, entry in data["attribution"]["maps"].items():
        j = nearest(entry["timesteps"], tr["timesteps"][step])
        for v in entry["views"]:
            assert panels[f"attr:{m}:{v}"]["shown"] == str(entry["steps"][j])
            assert panels[f"attr:{m}:{v}"]["t"] == str(entry["timesteps"][j])
    if data["saliency"]:
        for m, entry in data["saliency"]["maps"].items():
            t = entry["timesteps"][nearest(entry["timesteps"], tr["timesteps"][step])]
            assert panels[f"sal:{m}"]["t"] == str(t)
    if before is not None:
        for pid, p in panels.items():
            if p["shown"] != before[pid]["shown"]:
                assert p["digest"] != before[pid]["digest"], f"{pid} says it moved but was not redrawn"
    readouts = page.readouts()
    assert all(r["step"] == str(step) for r in readouts.values()), readouts
    want = expected_readouts(tables, cls, step, tr["image_ids"][0], tr["timesteps"], data)
    assert set(want) <= set(readouts), sorted(set(want) - set(readouts))
    for key, value in want.items():
        assert float(readouts[key]["value"]) == pytest.approx(value, rel=1e-4, abs=1e-6), key
    return panels


def test_the_page_moves_every_panel_and_readout_with_the_step_and_switches_class(page_dir, tables, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    assert (page_dir / "index.html").is_file()
    assert page_size(page_dir) < 15e6
    _, _, manifest = read_data(page_dir / "data" / "index.js")
    data = {c["name"]: read_data(page_dir / c["file"])[2] for c in manifest["classes"]}
    assert list(data) == ["digit_3", "digit_7"]
    page = Page(browser)
    page.open((page_dir / "index.html").as_uri(), "digit_3")

    d3 = data["digit_3"]
    last = len(d3["trajectory"]["steps"]) - 1
    panels = page.panels()
    ids = {f"traj:{v}" for v in d3["trajectory"]["views"]} | {"traj:x0"}
    ids |= {f"attr:{m}:{v}" for m in d3["attribution"]["methods"] for v in d3["attribution"]["maps"]["ig"]["views"]}
    ids |= {"sal:x_t", "sal:x0", "sal:dfrise", "sal:dfcam", "sal:final"}
    assert ids <= set(panels), sorted(ids - set(panels))
    at0 = check_step(page, tables, d3, 0)

    page.keys(Keys.END)  # the last step: every stage's panel moves to another map
    at_end = check_step(page, tables, d3, last, before=at0)
    for pid in ids - {"traj:x0", "sal:final"}:
        assert at_end[pid]["digest"] != at0[pid]["digest"], f"{pid} did not change between the first and last step"
    page.keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    check_step(page, tables, d3, last - 2, before=at_end)
    slider = browser.find_element("id", "step")
    slider.click()  # the middle of the slider, then its own arrow keys
    mid = page.step()
    slider.send_keys(Keys.ARROW_RIGHT)
    page.check_console()
    check_step(page, tables, d3, min(mid + 1, last))
    page.keys(Keys.HOME)
    check_step(page, tables, d3, 0)
    page.keys(Keys.ARROW_RIGHT)
    at1 = check_step(page, tables, d3, 1)

    Select(browser.find_element("id", "class")).select_by_visible_text("digit_7")
    page.wait("digit_7")
    d7 = data["digit_7"]
    panels7 = check_step(page, tables, d7, 1)
    assert not any(p.startswith("sal:") for p in panels7), "digit_7 has no saliency maps in the tiny config"
    note = browser.find_element("id", "panels").text
    assert "computed for digit_3 only" in note
    assert panels7["traj:x_t"]["digest"] != at1["traj:x_t"]["digest"], "the class switch did not redraw"
    assert "digit_7" in browser.find_element("id", "schedules").text
    assert browser.find_element("id", "components").is_displayed()
    page.keys(Keys.ARROW_RIGHT)  # the picker let go of the keys: they step again
    check_step(page, tables, d7, 2, before=panels7)

    shot = tmp_path / "explorer.png"
    browser.save_screenshot(str(shot))
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] > 500 and img.shape[1] > 1000
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert img.std() > 20 and colours > 500, f"a blank screenshot? {colours} colours, sd {img.std():.1f}"
    page.check_console()
    print(f"screenshot: {shot}")


def test_the_page_works_from_a_static_server(page_dir, browser):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(page_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = Page(browser)
        page.open(f"http://127.0.0.1:{server.server_address[1]}/index.html#class=digit_7&step=2", "digit_7")
        assert page.step() == 2
        assert all(p["cursor"] == "2" for p in page.panels().values())
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("variant", ["foundation only", "stable diffusion with tokens", "components only"])
def test_a_stage_left_out_leaves_no_broken_panel(variant, browser, tmp_path):
    """Synthetic runs (tests/fake_runs.py) with only some stages: the page opens without a console
    error, shows exactly the sections that ran, and every panel it has follows the step."""
    from selenium.webdriver.common.keys import Keys

    from diffxai.plots.explorer import Sources, write_page
    from fake_runs import SAL_ALL, fake_run

    full = Sources.from_run(fake_run(tmp_path / "results" / "fake", tokens=True))
    edits = {"component_baseline": full.component_baseline, "component_arrays": full.component_arrays}
    edits["concept_editing"] = full.concept_editing
    sources = {
        "foundation only": Sources(full.trajectories, likelihood=full.likelihood, intervals=full.intervals),
        "stable diffusion with tokens": Sources(
            saliency_maps=full.saliency_maps,
            saliency_stats=full.saliency_stats,
            schedule_samples=full.schedule_samples,
            schedule_steps=full.schedule_steps,
            token_relevance=full.token_relevance,
            **edits,
        ),
        "components only": Sources(**edits),
    }[variant]
    out = tmp_path / "explorer"
    write_page(out, sources, {"experiment": "fake", "class_names": ["digit_3", "digit_7"], "explorer": {}})
    page = Page(browser)
    page.open(out.as_uri() + "/index.html")
    shown = {s: browser.find_element("id", s).is_displayed() for s in ("main", "schedules", "components")}
    assert (
        shown
        == {
            "foundation only": {"main": True, "schedules": False, "components": False},
            "stable diffusion with tokens": {"main": True, "schedules": True, "components": True},
            "components only": {"main": False, "schedules": False, "components": True},
        }[variant]
    )
    panels = page.panels()
    assert all(p["state"] == "ok" for p in panels.values()), panels
    if variant == "foundation only":
        assert {"traj:x_t", "traj:x0_pred", "traj:x0"} == set(panels)
        assert "attribution stage did not run" in browser.find_element("id", "panels").text
    if variant == "stable diffusion with tokens":  # the slider runs over the sampling steps
        assert {"sal:x_t", "sal:x0", "sal:dfrise", "sal:dfcam", "sal:final", "tokens"} <= set(panels)
        page.keys(Keys.END)
        assert page.step() == len(SAL_ALL) - 1
        assert all(p["cursor"] == str(page.step()) for p in page.panels().values())
        assert {k for k in page.readouts() if k.startswith("token:")} == {"token:a", "token:red", "token:digit"}
    if variant == "components only":
        assert len(browser.find_elements("css selector", "#components canvas")) == 2 * 3 * 2  # classes x edits x n
    page.check_console()
