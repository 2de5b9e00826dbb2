"""The app in a real browser (Debian chromium + chromedriver, headless, through selenium): load
the page, blank a span by selecting it, run, wait for the result, check it, save screenshots.

Skipped when /usr/bin/chromium or chromedriver is missing (`apt-get install -y chromium
chromium-driver`). Screenshots go to $A3_SCREENSHOT_DIR when set, else to pytest's tmp dir;
docs/screenshots/ is made with the shipped model:
    A3_SCREENSHOT_DIR=docs/screenshots A3_BROWSER_MODEL=assets/a3-austen-tiny pytest tests/test_app_browser.py
"""
import os
import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM.exists() and Path(DRIVER).exists()),
                       reason="needs /usr/bin/chromium and chromedriver (apt-get install -y chromium chromium-driver)"),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from test_app_e2e import free_port, write_tiny_checkpoint

    from app.fallback import fallback_tokenizer

    # the app's own fallback tokenizer (Austen's when data/ is prepared), so the screenshots
    # show what a user of the untrained fallback sees
    # $A3_BROWSER_MODEL runs the same checks on another checkpoint (the README's screenshots use
    # the shipped model this way)
    ckpt = os.environ.get("A3_BROWSER_MODEL") or write_tiny_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny-random", fallback_tokenizer())
    mp = pytest.MonkeyPatch()
    mp.setenv("A3_MODEL_DIR", str(ckpt))
    if not os.environ.get("A3_BROWSER_MODEL"):  # a real adapter needs its base from the user's cache
        mp.setenv("A3_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    from app.ui import build_demo, launch_kwargs

    demo = build_demo()
    kw = launch_kwargs()
    kw.pop("server_name", None)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, **kw)
    try:
        yield demo.local_url
    finally:
        demo.close()
        mp.undo()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100",
                "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path):
    d = Path(os.environ.get("A3_SCREENSHOT_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def wait_for(fn, timeout=90.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        try:
            got = fn()
            if got:
                return got
        except Exception:  # the element is being re-rendered
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def by_css(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, css)


def finished(caption: str) -> bool:
    """The animation's caption once nothing is pending ("... 0 pending ...", not "10 pending")."""
    return re.search(r"(?<!\d)0 pending", caption) is not None


def open_page(driver, url):
    driver.get(url)
    wait_for(lambda: by_css(driver, "#run") and by_css(driver, "#story-editor .text"), 60, "the page")


def pick_example(driver, title):
    from selenium.webdriver.common.by import By
    driver.find_element(By.XPATH, f"//*[@id='examples']//*[normalize-space(text())='{title}']").click()
    time.sleep(0.5)  # the click's change event re-renders the editor


RECT_JS = """
const node = arguments[0].firstChild, i = node.textContent.indexOf(arguments[1]);
if (i < 0) return null;
const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + arguments[1].length);
const rects = r.getClientRects(), a = rects[0], b = rects[rects.length - 1];
return [a.left + 1, (a.top + a.bottom) / 2, b.right - 1, (b.top + b.bottom) / 2];
"""


def drag_select(driver, element, phrase):
    """Select `phrase` inside element the way a user does: press, drag across it, release."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    time.sleep(0.3)
    x0, y0, x1, y1 = driver.execute_script(RECT_JS, element, phrase)
    ab = ActionBuilder(driver)
    ab.pointer_action.move_to_location(int(x0), int(y0)).pointer_down()
    ab.pointer_action.move_to_location(int((x0 + x1) / 2), int(y1)).move_to_location(int(x1), int(y1)).pointer_up()
    ab.perform()


def open_text_accordion(driver):
    """Open 'Story as text ...' (closed by default) unless it is open already."""
    if not by_css(driver, "#template textarea"):
        by_css(driver, "#text-accordion button, #text-accordion .label-wrap")[0].click()
    return wait_for(lambda: by_css(driver, "#template textarea")[0], 60, "the template box")


def full_page_shot(driver, path):
    h = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, h + 40)
    time.sleep(0.8)
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1100)


def test_blank_a_span_run_and_see_the_result(browser, url, shots):
    d = browser
    open_page(d, url)
    pick_example(d, "A change of plans")
    wait_for(lambda: "0 blanks" in by_css(d, "#story-info")[0].text or "no blank" in by_css(d, "#story-info")[0].text,
             60, "the example without blanks")
    time.sleep(1.0)  # let the editor's own change event come back before selecting
    text_el = by_css(d, "#story-editor .text")[0]
    story = text_el.text
    # select "the abbey" with the mouse: the editor turns the selection into a blank
    drag_select(d, text_el, "the abbey")
    wait_for(lambda: "1 blank" in by_css(d, "#story-info")[0].text, 60, "the selection to become a blank")
    pieces = [e.text for e in by_css(d, "#story-editor .text")]
    assert any(p.startswith("[[") for p in pieces), pieces
    template = open_text_accordion(d).get_attribute("value")
    assert template.count("[[") == 1 and "drive to [[" in template and "]] on Thursday" in template, template
    original = by_css(d, "#blanks-table")[0].text
    assert "the abbey" in original, "the blanks table remembers the text the blank replaced"
    d.find_element("css selector", "#run").click()
    caption = wait_for(lambda: (t := by_css(d, "#caption")[0].text) and finished(t) and t, 60, "the run to finish")
    assert caption.startswith("Step 1 of 1") or "Step" in caption
    labels = [e.text for e in by_css(d, "#result .legend-item")]
    assert "blank" in labels and "new p<0.1" in labels
    result_text = "".join(e.text for e in by_css(d, "#result .textfield .text"))
    assert "\u2581" not in result_text, "no pending blank token left"
    before, after = template.split("[[")[0].rstrip(" "), template.split("]]")[1]
    assert result_text.startswith(before) and result_text.endswith(after), "visible text unchanged"
    assert story.startswith(before)
    wait_for(lambda: by_css(d, "#order-plot .js-plotly-plot") and by_css(d, "#token-plot .js-plotly-plot"), 60,
             "the plots")
    d.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    full_page_shot(d, shots / "finished-run.png")
    plot = by_css(d, "#order-plot")[0]
    d.execute_script("arguments[0].scrollIntoView()", plot)
    time.sleep(0.5)
    by_css(d, "#order-plot")[0].screenshot(str(shots / "order-plot.png"))
    by_css(d, "#token-plot")[0].screenshot(str(shots / "token-plot.png"))
    assert (shots / "finished-run.png").stat().st_size > 10_000


def test_markup_in_the_story_is_shown_as_text(browser, url):
    d = browser
    open_page(d, url)
    box = open_text_accordion(d)
    box.clear()
    box.send_keys("<b>bold</b> <img src=x onerror=\"document.title='pwned'\"> Then she [[2]] home.")
    # the default story may have one blank too: wait for the typed text itself (a loaded CPU is slow)
    wait_for(lambda: "<b>bold</b>" in " ".join(e.text for e in by_css(d, "#story-editor .text")), 60,
             "the typed template in the editor")
    # the info line follows the editor by an event: wait for it too before reading it
    wait_for(lambda: "1 blank" in by_css(d, "#story-info")[0].text, 30, "the info line of the typed template")
    assert "1 blank" in by_css(d, "#story-info")[0].text, "the typed template has one blank"
    editor_text = " ".join(e.text for e in by_css(d, "#story-editor .text"))
    assert "<b>bold</b>" in editor_text and "<img" in editor_text, f"markup is shown as text: {editor_text!r}"
    assert not by_css(d, "#story-editor b") and not by_css(d, "#story-editor img")
    d.find_element("css selector", "#run").click()
    wait_for(lambda: finished(by_css(d, "#caption")[0].text), 60, "the run to finish")
    assert "<b>bold</b>" in by_css(d, "#result .textfield")[0].text
    assert not by_css(d, "#result b") and not by_css(d, "#result img")
    assert d.title != "pwned"


def set_number(driver, elem_id, value):
    """Type a value into the number box of a slider (what a user does to set it exactly)."""
    box = by_css(driver, f"#{elem_id} input[type=number]")[0]
    box.clear()
    box.send_keys(value + "\t")
    wait_for(lambda: float(box.get_attribute("value")) == float(value), 60, f"{elem_id} = {value}")


def choose(driver, elem_id, label):
    """Pick `label` in the Gradio dropdown with this elem_id."""
    by_css(driver, f"#{elem_id} input")[0].click()
    option = wait_for(lambda: [o for o in by_css(driver, "[role=option]")
                               if o.text.strip().splitlines()[-1] == label][0], 60, f"option {label!r}")
    option.click()
    wait_for(lambda: by_css(driver, f"#{elem_id} input")[0].get_attribute("value") == label, 60, f"{label!r} chosen")


def test_an_order_and_a_comparison(browser, url, shots):
    d = browser
    open_page(d, url)
    pick_example(d, "The ball")
    wait_for(lambda: "2 blanks" in by_css(d, "#story-info")[0].text, 60, "the example with two blanks")
    choose(d, "strategy", "outside-in")
    set_number(d, "speed", "0.4")  # slow enough to catch the animation mid-way
    d.execute_script("window.scrollTo(0, 0)")
    d.find_element("css selector", "#run").click()
    wait_for(lambda: "Step 6 of 13" in by_css(d, "#caption")[0].text, 60, "step 6 of the animation")
    d.save_screenshot(str(shots / "animating.png"))
    spans = by_css(d, "#result .textfield .text")
    assert any("\u2581" in e.text for e in spans), "pending blank tokens are shown mid-way"
    wait_for(lambda: finished(by_css(d, "#caption")[0].text), 60, "the outside-in run to finish")
    set_number(d, "speed", "0")
    wait_for(lambda: by_css(d, "#order-plot .js-plotly-plot"), 60, "the order plot")
    assert "outside-in" in by_css(d, "#stats")[0].text
    time.sleep(0.5)
    d.execute_script("arguments[0].scrollIntoView()", by_css(d, "#order-plot")[0])
    time.sleep(0.3)
    by_css(d, "#order-plot")[0].screenshot(str(shots / "order-plot-outside-in.png"))
    from selenium.webdriver.common.by import By
    d.find_element(By.XPATH, "//button[@role='tab' and normalize-space()='Compare two orders']").click()
    d.find_element("css selector", "#compare").click()
    wait_for(lambda: "Done" in by_css(d, "#cmp-status")[0].text, 60, "the comparison to finish")
    table = by_css(d, "#cmp-table")[0].text
    assert "forward passes" in table and "tokens / s" in table and "log p, left-to-right" in table
    for side in "AB":
        assert "\u2581" not in by_css(d, f"#cmp-result-{side} .textfield")[0].text
    d.execute_script("arguments[0].scrollIntoView()", by_css(d, "#cmp-strategy-A")[0])
    time.sleep(0.8)
    full_page_shot(d, shots / "compare.png")


def edit_cell(driver, elem_id, row, col, value):
    """Double-click a Dataframe cell, type a value, press Enter."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    cell = by_css(driver, f"#{elem_id} [data-testid='cell-{row}-{col}']")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    ActionChains(driver).double_click(cell).perform()
    box = wait_for(lambda: by_css(driver, f"#{elem_id} [data-testid='cell-{row}-{col}'] textarea")[0], 60, "a cell editor")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(value, Keys.ENTER)


def test_custom_order_picked_per_blank(browser, url):
    d = browser
    open_page(d, url)
    pick_example(d, "The ball")
    wait_for(lambda: "2 blanks" in by_css(d, "#story-info")[0].text, 60, "the example with two blanks")
    time.sleep(1.0)
    open_text_accordion(d)
    edit_cell(d, "blanks-table", 0, 4, "2")
    wait_for(lambda: by_css(d, "#strategy input")[0].get_attribute("value") == "custom", 60,
             "the order to switch to custom")
    edit_cell(d, "blanks-table", 1, 4, "1")
    wait_for(lambda: by_css(d, "#custom-order textarea")[0].get_attribute("value") == "2 1", 60, "custom order '2 1'")
    set_number(d, "speed", "0")
    d.find_element("css selector", "#run").click()
    wait_for(lambda: finished(by_css(d, "#caption")[0].text), 60, "the run to finish")
    assert "custom '2 1'" in by_css(d, "#stats")[0].text


def test_stop_halts_the_animation(browser, url):
    d = browser
    open_page(d, url)
    pick_example(d, "The ball")
    wait_for(lambda: "2 blanks" in by_css(d, "#story-info")[0].text, 60, "the example with two blanks")
    set_number(d, "speed", "1")
    d.find_element("css selector", "#run").click()
    wait_for(lambda: "Step 2 of 13" in by_css(d, "#caption")[0].text, 60, "the animation to start")
    d.find_element("css selector", "#stop").click()
    wait_for(lambda: "Stopped" in by_css(d, "#status")[0].text, 60, "the stop message")
    time.sleep(1.5)  # a frame already on its way when Stop was clicked may still land (1 s per step)
    caption = by_css(d, "#caption")[0].text
    time.sleep(2.5)
    assert by_css(d, "#caption")[0].text == caption, "no frame arrives after Stop"
    assert "Step 13 of 13" not in caption, "Stop should halt the animation before its end"
    set_number(d, "speed", "0")
    d.find_element("css selector", "#run").click()
    wait_for(lambda: finished(by_css(d, "#caption")[0].text), 60, "a new run after Stop")


def test_ranked_candidates_and_a_chosen_length(browser, url, shots):
    """Four candidates from other orders, ranked in the table with the winner animated; a [[?]]
    blank gets the length the model chooses, and the status names it and the runners-up."""
    d = browser
    open_page(d, url)
    pick_example(d, "The ball")
    wait_for(lambda: "2 blanks" in by_css(d, "#story-info")[0].text, 60, "the example with two blanks")
    set_number(d, "n-cands", "4")
    set_number(d, "speed", "0")
    d.find_element("css selector", "#run").click()
    wait_for(lambda: "Best of 4 candidates" in by_css(d, "#status")[0].text, 90, "the ranked candidates")
    table = wait_for(lambda: (t := by_css(d, "#cands-table")[0].text) and "your settings" in t and t, 60,
                     "the candidates table")
    assert all(f"\n{i}\n" in f"\n{table}\n" or f"{i} " in table for i in (1, 2, 3, 4)), f"four ranked rows: {table}"
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", by_css(d, "#result")[0])
    time.sleep(0.8)
    full_page_shot(d, shots / "ranked-candidates.png")
    box = open_text_accordion(d)
    box.clear()
    box.send_keys("Emma had not meant to stay long. She [[?]] by the window until the carriage came.")
    wait_for(lambda: "1 blank" in by_css(d, "#story-info")[0].text, 60, "the [[?]] template")
    d.find_element("css selector", "#run").click()
    status = wait_for(lambda: (t := by_css(d, "#status")[0].text) and "Chosen length" in t and t, 90,
                      "the chosen length")
    assert "runners-up" in status, f"the runners-up are named: {status}"


def test_a_fill_in_progress_as_an_animated_gif(browser, url, shots):
    """The README's first picture: the result area at every step of a confidence-ordered fill,
    captured as the page animates it, written as fill-in-progress.gif (PIL); each frame differs
    from the one before and the last one has no pending token."""
    import io

    from PIL import Image
    d = browser
    open_page(d, url)
    pick_example(d, "The ball")
    wait_for(lambda: "2 blanks" in by_css(d, "#story-info")[0].text, 60, "the example with two blanks")
    choose(d, "strategy", "dynamic: confidence")
    set_number(d, "speed", "1")  # a second a step: time for an element screenshot of each
    d.find_element("css selector", "#run").click()
    d.execute_script("arguments[0].scrollIntoView()", wait_for(lambda: by_css(d, "#result"), 60, "the result")[0])
    frames, captions = [], []
    end = time.time() + 120
    while time.time() < end:
        cap = by_css(d, "#caption")[0].text
        if cap and (not captions or cap != captions[-1]):
            captions.append(cap)
            frames.append(Image.open(io.BytesIO(by_css(d, "#result")[0].screenshot_as_png)).convert("RGB"))
        if finished(cap):
            break
        time.sleep(0.05)
    assert finished(captions[-1]), f"the run should finish: {captions[-3:]}"
    assert len(frames) >= 5, f"one frame per step at least five times: {len(frames)} frames, {captions}"
    w, h = frames[-1].size
    frames = [f.resize((w, h)) if f.size != (w, h) else f for f in frames]
    path = shots / "fill-in-progress.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[500] * (len(frames) - 1) + [2500],
                   loop=0, optimize=True)
    n = Image.open(path).n_frames  # PIL folds a frame identical to the one before into it
    assert 5 <= n <= len(frames), f"the GIF holds the steps: {n} frames of {len(frames)} captured"
