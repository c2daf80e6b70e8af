"""The pack as users meet it: ComfyUI's real web frontend in a real (headless) browser.

A real `main.py --cpu` server on 127.0.0.1 serves the frontend that ComfyUI's requirements.txt pins
(comfyui-frontend-package, installed by scripts/setup_browser.sh); Debian's chromium, driven
through Debian's chromedriver by selenium (given both paths: nothing downloads a browser or a
driver), opens it as a user would: the Templates button in the sidebar, the pack's entry under
Extensions, the CPU demo's card, the Run button.  The assertions read what the page holds and
shows (the template cards, the nodes' preview <img> elements and node.imgs, the text under the
nodes), then check it against the server's /history.  Screenshots go to test_output/browser/
(or $NUMINA_TEST_OUTPUT/browser/); their paths are printed.

Without chromium + chromedriver (or selenium, or the frontend package) the tests skip with how to
install them; under CI=true they fail instead.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
from importlib import metadata

import pytest

from numina_dev import ROOT, comfy_runtime
from numina_dev.comfy_server import ComfyServer

DEMO = "numina_cpu_demo"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
OUTPUT = os.path.join(os.environ.get("NUMINA_TEST_OUTPUT") or os.path.join(ROOT, "test_output"), "browser")
HOW_TO_INSTALL = ("run ./scripts/test.sh as root (scripts/setup_browser.sh installs them), or "
                  "'sudo apt-get install chromium chromium-driver' and './scripts/setup_env.sh'; "
                  "NUMINA_CHROMIUM / NUMINA_CHROMEDRIVER name another Chromium and its ChromeDriver")
# Chromium here, headless: no sandbox as root, and none of the background connections that a closed
# network refuses (they slow the start and fill the log).
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1600,1000"]
# What each NUMINA node shows under itself once it ran (its progress text), as regular expressions.
REPORTS = {
    "NuminaAttentionCapture": r"^NUMINA capture: \d+ x \w+",
    "NuminaLayoutInfer": r"^\w+: target \d+, per-frame counts \[[\d, ]+\] -> ",
    "NuminaLayoutRefine": r"^\w+: target \d+, per-frame counts \[[\d, ]+\] -> matches the target in every frame",
    "NuminaSampler": r"^NUMINA sampler: ",
    "NuminaCrossAttnGuide": r"^NUMINA guide: biased \d+ of \d+ text cross-attention calls",
}
# The count checks and the checked sampler sit right of the demo's first view: looked at after the
# view is moved onto them, as a user pans to them.
CHECK_REPORTS = {
    "NuminaCountCheck": r"^count check: (every count right|a count is wrong); score \d\.\d{3}",
    "NuminaCheckedSampler": r"^NUMINA checked sampler: kept try \d+ of \d+ \(seed \d+",
}
LAYOUT_NODES = ("NuminaLayoutInfer", "NuminaLayoutRefine")
# The page's hooks, the same on frontend 1.32.x (ComfyUI 0.3.75) and 1.49.x (ComfyUI 0.33): the
# sidebar's Templates tab (its class is made from the tab's id, "templates"), the template browser
# (a role=dialog labelled by its dialog key; its inner classes changed between the two), the Run
# button (the queue button itself on 1.49, the first button of its split button on 1.32).
TEMPLATES_BUTTON = "button.templates-tab-button"
TEMPLATE_DIALOG_KEY = "global-workflow-template-selector"
TEMPLATE_DIALOG = f"[role='dialog'][aria-labelledby='{TEMPLATE_DIALOG_KEY}']"
RUN_BUTTON = "button[data-testid='queue-button'], [data-testid='queue-button'] button"
RUN: dict = {}      # what the run test saw, for the layout checks after it


def missing(what: str) -> None:
    message = f"browser tests: {what}; {HOW_TO_INSTALL}"
    if IN_CI:
        pytest.fail(message + " (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(message)


def executable(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if os.access(os.environ[env], os.X_OK) else None
    return next((p for p in map(shutil.which, names) if p), None)


def shot(driver, name: str, config) -> str:
    """A screenshot of the page into OUTPUT; its path goes to the terminal (not captured)."""
    os.makedirs(OUTPUT, exist_ok=True)
    path = os.path.join(OUTPUT, name)
    driver.save_screenshot(path)
    say(config, f"screenshot: {path}")
    return path


def say(config, line: str) -> None:
    """A line in pytest's output even when the test passes (output capture set aside for it)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="module")
def tools():
    chromium = executable("NUMINA_CHROMIUM", "chromium", "chromium-browser")
    chromedriver = executable("NUMINA_CHROMEDRIVER", "chromedriver")
    if not chromium or not chromedriver:
        missing(f"no {'chromium' if not chromium else 'chromedriver'} found")
    if importlib.util.find_spec("selenium") is None:
        missing("the selenium package is not installed in this venv (requirements-dev.txt)")
    if importlib.util.find_spec("comfyui_frontend_package") is None:
        missing("comfyui-frontend-package (ComfyUI's web UI) is not installed in this venv")
    return chromium, chromedriver


@pytest.fixture(scope="module")
def server(tools):
    """A fresh user folder (settings: the first-run tour already seen, so the page opens on the
    default graph and the Templates button is the way in) and output folder; nothing cached."""
    user = tempfile.mkdtemp(prefix="numina_ui_user_")
    os.makedirs(os.path.join(user, "default"))
    with open(os.path.join(user, "default", "comfy.settings.json"), "w") as f:
        json.dump({"Comfy.TutorialCompleted": True}, f)
    output = tempfile.mkdtemp(prefix="numina_ui_output_")
    with ComfyServer(real_frontend=True, args=("--user-directory", user, "--output-directory", output)) as s:
        yield s
    shutil.rmtree(user, ignore_errors=True)
    shutil.rmtree(output, ignore_errors=True)


@pytest.fixture(scope="module")
def page(tools, server, pytestconfig):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ.setdefault("SE_OFFLINE", "true")    # Selenium Manager, were it ever asked, stays offline
    chromium, chromedriver = tools
    profile = tempfile.mkdtemp(prefix="numina_chromium_")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.set_script_timeout(30)
        driver.get(server.url + "/")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return !!(window.app && window.app.graph && window.app.graph.nodes.length"
            " && document.querySelector(arguments[0]))", TEMPLATES_BUTTON))
        yield driver
        shot(driver, "last_page.png", pytestconfig)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_templates(driver, module: str = "numina"):
    """Templates button in the sidebar -> the template browser -> the pack's entry (`module`, its
    folder in custom_nodes/) under Extensions.  Returns the template cards it shows, in order."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30)
    dialog = (By.CSS_SELECTOR, TEMPLATE_DIALOG)
    if not [d for d in driver.find_elements(*dialog) if d.is_displayed()]:
        driver.find_element(By.CSS_SELECTOR, TEMPLATES_BUTTON).click()
    wait.until(EC.visibility_of_element_located(dialog))
    entry = wait.until(EC.element_to_be_clickable((By.XPATH, (
        f"//*[@role='dialog'][@aria-labelledby='{TEMPLATE_DIALOG_KEY}']//nav//*[@role='button']"
        f"[normalize-space(.)='{module}']"))))
    entry.click()
    wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, f"[data-testid='template-workflow-{DEMO}']")))
    cards = driver.find_elements(By.CSS_SELECTOR, f"{TEMPLATE_DIALOG} [data-testid^='template-workflow-']")
    return [c for c in cards if c.is_displayed()]


def test_frontend_is_the_one_comfyui_pins():
    if importlib.util.find_spec("comfyui_frontend_package") is None:
        missing("comfyui-frontend-package (ComfyUI's web UI) is not installed in this venv")
    with open(os.path.join(comfy_runtime.comfyui_path(), "requirements.txt")) as f:
        pin = re.search(r"^comfyui-frontend-package==(\S+)", f.read(), re.M)
    assert pin, "ComfyUI's requirements.txt names no comfyui-frontend-package version"
    assert metadata.version("comfyui-frontend-package") == pin.group(1)


def test_template_browser_lists_the_pack_workflows(server, page, pytestconfig):
    from selenium.webdriver.support.ui import WebDriverWait

    templates = server.get("/api/workflow_templates")
    module = next((m for m, names in templates.items() if DEMO in names), None)
    assert module == "numina", f"the server lists no {DEMO} template under the pack: {templates}"

    cards = open_templates(page, module)
    shown = [c.get_attribute("data-testid").removeprefix("template-workflow-") for c in cards]
    assert sorted(shown) == sorted(templates[module]), (shown, templates)
    for card in cards:       # each card shows its title and a loaded thumbnail (the .jpg beside it)
        name = card.get_attribute("data-testid").removeprefix("template-workflow-")
        assert name in card.text, card.text
        WebDriverWait(page, 10).until(lambda d: d.execute_script(
            "const img = arguments[0].querySelector('img'); return !!img && img.complete && img.naturalWidth > 0",
            card), f"{name}: no thumbnail on its card")
    shot(page, "1_template_browser.png", pytestconfig)


def test_cpu_demo_from_the_template_browser_runs_and_shows_previews_and_reports(server, page, pytestconfig):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.time()
    cards = open_templates(page)
    next(c for c in cards if c.get_attribute("data-testid") == f"template-workflow-{DEMO}").click()
    WebDriverWait(page, 30).until(lambda d: d.execute_script(
        "return !document.querySelector(arguments[0])"
        " && app.graph.nodes.some(n => n.type === 'NuminaLayoutRefine')", TEMPLATE_DIALOG))
    types = page.execute_script("return app.graph.nodes.map(n => n.type)")
    for needed in ("NuminaAttentionCapture", *LAYOUT_NODES):
        assert needed in types, f"the loaded {DEMO} has no {needed}: {types}"
    assert {"NuminaSampler", "NuminaCrossAttnGuide"} & set(types), types
    tabs = [t.text.strip() for t in page.find_elements(By.CSS_SELECTOR, ".workflow-tabs .workflow-label") if t.is_displayed()]
    assert DEMO in tabs, f"no tab named {DEMO}: {tabs}"

    # Run, as a user does; the page's own event stream says when the run ended.
    page.execute_script("""
        window.__numina = {ended: null, prompt: null};
        for (const type of ['execution_start', 'execution_success', 'execution_error', 'execution_interrupted'])
            app.api.addEventListener(type, e => {
                if (type === 'execution_start') window.__numina.prompt = e.detail.prompt_id;
                else window.__numina.ended = {type, detail: e.detail};
            });""")
    run = page.find_element(By.CSS_SELECTOR, RUN_BUTTON)
    assert run.text.strip() in ("Run", "Queue"), run.text
    run.click()
    WebDriverWait(page, 120, poll_frequency=0.25).until(lambda d: d.execute_script("return window.__numina.ended"))
    ended = page.execute_script("return window.__numina")
    assert ended["ended"]["type"] == "execution_success", f"{ended}\n{server.read_log()}"
    say(pytestconfig, f"template opened and run in the browser in {time.time() - started:.1f} s")

    # What the page shows on the NUMINA nodes.
    WebDriverWait(page, 20).until(lambda d: d.execute_script("""
        return app.graph.nodes.filter(n => ['NuminaLayoutInfer', 'NuminaLayoutRefine'].includes(n.type))
            .every(n => (n.imgs || []).length && n.imgs[0].complete && n.imgs[0].naturalWidth > 0)"""))
    shown = page.execute_async_script(SHOWN_ON_NODES, list(REPORTS))
    assert isinstance(shown, list), shown
    history = server.get(f"/history/{ended['prompt']}")[ended["prompt"]]["outputs"]

    for node in shown:
        label = f"{node['type']} #{node['id']}"
        # the report: progress text under the node, in a visible element on the page
        assert node["text"], f"{label} shows no text: {node}"
        assert re.search(REPORTS[node["type"]], node["text"]), f"{label}: {node['text']!r}"
        assert node["text_visible"], f"{label}: its text is not on screen: {node}"
        # the same report the server keeps for the node (the guide's changes once sampling has run)
        kept = history[str(node["id"])]["text"][0]
        if node["type"] == "NuminaCrossAttnGuide":
            assert kept.startswith("NUMINA guide: "), kept
        else:
            assert node["text"] == kept, (node["text"], kept)
    types_shown = {n["type"] for n in shown}
    assert {"NuminaAttentionCapture", *LAYOUT_NODES} <= types_shown, types_shown

    for node in (n for n in shown if n["type"] in LAYOUT_NODES):
        label = f"{node['type']} #{node['id']}"
        preview = node["preview"]
        assert preview, f"{label} shows no preview image: {node}"
        # an <img> on the page, visible, loaded, an animated WEBP with one picture per latent frame,
        # the file the server wrote for this node, not blank
        assert preview["visible"] and preview["width"] > 0 and preview["height"] > 0, preview
        assert preview["natural"][0] > 0 and preview["natural"][1] > 0, preview
        assert preview["riff"] == "RIFF" and preview["webp"] == "WEBP" and preview["anim"], preview
        assert preview["frames"] >= 2, preview
        assert preview["distinct_colours"] > 8, preview
        served = history[str(node["id"])]["images"][0]
        assert f"filename={served['filename']}" in preview["src"] and "type=temp" in preview["src"], (preview, served)
        assert node["canvas_imgs"] and node["canvas_imgs"][0] == preview["src"], node
        say(pytestconfig, f"{label}: preview {preview['natural'][0]}x{preview['natural'][1]} px, {preview['frames']} frames, "
              f"drawn at {preview['width']:.0f}x{preview['height']:.0f} px on screen (zoom {node['scale']:.2f}: "
              f"{preview['height'] / node['scale']:.0f} px tall at 100 %); text {node['text']!r}")

    RUN["previews"] = {f"{n['type']} #{n['id']}": n["preview"]["height"] / n["scale"]
                       for n in shown if n["type"] in LAYOUT_NODES}

    # The count checks and the checked sampler: the view moved onto them, then their text and the
    # animated check preview (boxes and count / target on every video frame) on each of them.
    page.execute_script("""
        const ns = app.graph.nodes.filter(n => arguments[0].includes(n.type));
        const x0 = Math.min(...ns.map(n => n.pos[0])), y0 = Math.min(...ns.map(n => n.pos[1] - 30));
        const x1 = Math.max(...ns.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...ns.map(n => n.pos[1] + n.size[1]));
        app.canvas.ds.fitToBounds([x0 - 20, y0 - 20, x1 - x0 + 40, y1 - y0 + 40]);
        app.canvas.setDirty(true, true);""", list(CHECK_REPORTS))
    time.sleep(1.0)
    checks = page.execute_async_script(SHOWN_ON_NODES, list(CHECK_REPORTS))
    assert {n["type"] for n in checks} == set(CHECK_REPORTS), checks
    for node in checks:
        label = f"{node['type']} #{node['id']}"
        assert re.search(CHECK_REPORTS[node["type"]], node["text"]), f"{label}: {node['text']!r}"
        assert node["text_visible"], f"{label}: its text is not on screen: {node}"
        assert node["text"] == history[str(node["id"])]["text"][0], label
        preview = node["preview"]
        assert preview and preview["anim"] and preview["frames"] == 5, f"{label}: no animated check preview: {node}"
        say(pytestconfig, f"{label}: {node['text'].splitlines()[0][:90]}...; preview {preview['frames']} frames")
    RUN["boxes"] = page.execute_script(
        "return app.graph.nodes.map(n => [n.id, n.type, n.title, Array.from(n.getBounding())])")

    # Fit the view to the NUMINA nodes (as a user zooms in on them) for the screenshot.
    page.execute_script("""
        const ns = app.graph.nodes.filter(n => n.type.startsWith('Numina') && arguments[0].includes(n.type));
        const x0 = Math.min(...ns.map(n => n.pos[0])), y0 = Math.min(...ns.map(n => n.pos[1] - 30));
        const x1 = Math.max(...ns.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...ns.map(n => n.pos[1] + n.size[1]));
        app.canvas.ds.fitToBounds([x0 - 20, y0 - 20, x1 - x0 + 40, y1 - y0 + 40]);
        app.canvas.setDirty(true, true);""", list(REPORTS))
    time.sleep(0.5)
    path = shot(page, "2_cpu_demo_after_run.png", pytestconfig)
    assert os.path.getsize(path) > 10_000
    errors = [e["message"] for e in page.get_log("browser")
              if e["level"] == "SEVERE" and "numina" in e["message"].lower() and "api.comfy.org" not in e["message"]]
    assert not errors, errors


def test_layout_previews_have_room_on_the_loaded_template():
    """After the run, each layout preview is drawn at least 100 px tall (graph units: its size at
    100 % zoom; the picture is 256 x 276 px) and no NUMINA node overlaps another node (the nodes
    grow by their text and preview once run: a template that gives them no room hides both)."""
    if not RUN:
        pytest.skip("needs the run of test_cpu_demo_from_the_template_browser_runs_and_shows_previews_and_reports")
    small = {label: round(h) for label, h in RUN["previews"].items() if h < 100}
    overlaps = []
    for i, (id_a, type_a, title_a, (xa, ya, wa, ha)) in enumerate(RUN["boxes"]):
        for id_b, type_b, title_b, (xb, yb, wb, hb) in RUN["boxes"][i + 1:]:
            if "Numina" in type_a + type_b and xa < xb + wb and xb < xa + wa and ya < yb + hb and yb < ya + ha:
                overlaps.append(f"{title_a} #{id_a} / {title_b} #{id_b}")
    assert not small and not overlaps, f"previews drawn too small (px at 100 %): {small}; overlapping: {overlaps}"


# Runs in the page: for each node of the given types, the text the frontend shows under it and the
# layout preview <img> it shows (with the image's bytes read back: RIFF/WEBP, ANIM, frame count),
# and whether each is visible on screen.
SHOWN_ON_NODES = """
const [types, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const visible = el => {
    if (!el || !el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const out = [];
  for (const node of app.graph.nodes.filter(n => types.includes(n.type))) {
    const textWidget = (node.widgets || []).find(w => w.name === '$$node-text-preview');
    const text = textWidget ? String(textWidget.value) : '';
    // the element on the page that holds this text (the widget's DOM, or any DOM widget showing it)
    const holders = [...document.querySelectorAll('.dom-widget, .dom-widget *')]
      .filter(el => text && (el.innerText || el.value || '').includes(text.split('\\n')[0]));
    const entry = {id: node.id, type: node.type, text, text_visible: holders.some(visible), scale: app.canvas.ds.scale,
                   canvas_imgs: (node.imgs || []).map(i => i.src), preview: null};
    const previewWidget = (node.widgets || []).find(w => w.name === '$$comfy_animation_preview');
    const img = previewWidget?.element?.querySelector('img');
    if (img) {
      const r = img.getBoundingClientRect();
      const response = await fetch(img.src, {cache: 'no-store'});
      const bytes = new Uint8Array(await response.arrayBuffer());
      const ascii = (a, b) => String.fromCharCode(...bytes.slice(a, b));
      let frames = 0, anim = false;
      for (let i = 12; i + 8 <= bytes.length;) {           // RIFF chunks: ANIM, then one ANMF a frame
        const tag = ascii(i, i + 4);
        const size = bytes[i + 4] | bytes[i + 5] << 8 | bytes[i + 6] << 16 | bytes[i + 7] << 24;
        if (tag === 'ANIM') anim = true;
        if (tag === 'ANMF') frames += 1;
        i += 8 + size + (size & 1);
      }
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      const colours = new Set();
      for (let i = 0; i < px.length && colours.size < 100; i += 4 * 7) colours.add(px[i] << 16 | px[i + 1] << 8 | px[i + 2]);
      entry.preview = {src: img.src, visible: visible(img), width: r.width, height: r.height,
                       natural: [img.naturalWidth, img.naturalHeight], riff: ascii(0, 4), webp: ascii(8, 12),
                       anim, frames, distinct_colours: colours.size, status: response.status, bytes: bytes.length,
                       content_type: response.headers.get('content-type')};
    }
    out.push(entry);
  }
  return out;
})().then(done, e => done({error: String(e)}));
"""
