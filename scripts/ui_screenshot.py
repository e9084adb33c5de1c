"""Make the README's picture of the dashboard: ``python scripts/ui_screenshot.py [OUT.png]``.

Writes a demo store (a small sweep of six runs, one still running) in a temporary folder, serves
it with tracklab's dashboard, opens the charts of four runs in headless Chromium at 1400x900,
hovers one chart so the synced cursor and its values show, and saves the PNG (default
docs/ui-charts.png). Needs the ui extra, selenium, chromium and chromium-driver.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "ui-charts.png")
    from tests import browser
    from tests.ui_fixtures import demo_store, make_run

    why = browser.missing()
    if why:
        print(f"ui_screenshot: {why}", file=sys.stderr)
        return 1
    store = tempfile.mkdtemp(prefix="tracklab-ui-shot-")
    os.environ["TRACKLAB_DIR"] = store
    ids = demo_store(store, runs=5, steps=1000, keys=4)
    live = make_run(store, "vit-small-long", steps=700, seed=5, keys=4, finish=False,
                    started=1_780_000_000.0 + 5 * 7200, tags=["sweep", "long"])
    from tracklab.ui.server import Dashboard

    server = Dashboard(store, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = browser.chrome(1400, 900)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1400, "height": 900, "deviceScaleFactor": 1,
                                "mobile": False})
        chosen = [ids[1], ids[2], ids[4], live.id]
        driver.get(f"{server.url}#/charts?runs={','.join(chosen)}")
        deadline = time.monotonic() + 60
        while not driver.execute_script("return state.drawn === true"):
            assert time.monotonic() < deadline, "charts never drawn"
            time.sleep(0.05)
        driver.execute_script("document.getElementById('smoothing').value = 0.6;"
                              "document.getElementById('smooth-v').textContent = '0.60';"
                              "state.smoothing = 0.6; redrawAll();")
        time.sleep(0.3)
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        over = driver.find_element(By.CSS_SELECTOR, '.card[data-key="train/loss"] .u-over')
        ActionChains(driver).move_to_element_with_offset(over, 40, 10).perform()
        time.sleep(0.3)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        server.shutdown()
        live.finish()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
