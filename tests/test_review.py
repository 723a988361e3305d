"""`makeanything review`: a static site opened from the file system in a real headless Chromium (Debian's
chromium + chromium-driver with selenium): the index and the task pages render, the filters and the pager
change what is shown, excluded sequences are greyed with their reason, no request leaves the file system,
and a later run reuses the thumbnails. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from makeanything.cli import main

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def site(mixed_corpus, tmp_path_factory):
    d = tmp_path_factory.mktemp("review")
    corpus = d / "corpus"
    shutil.copytree(mixed_corpus.out, corpus)
    assert (
        main(
            [
                "curate",
                str(corpus),
                "--drop-source",
                "cat",
                "--reason",
                "a band of the photo is missing",
                "--by",
                "ann",
            ]
        )
        == 0
    )
    assert main(["review", str(corpus), "--out", str(d / "site"), "--page-size", "2"]) == 0
    return corpus, d / "site"


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
    )
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (make test installs them where apt can)"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=str(DRIVER)))
    yield driver
    driver.quit()


def requests(driver) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's DevTools network log)."""
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            out.append(msg["params"]["request"]["url"])
    return out


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def test_site_files_are_self_contained(site):
    _, folder = site
    for page in folder.glob("*.html"):
        text = page.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, page.name
    assert "http" not in (folder / "assets" / "site.js").read_text()


def test_index_and_task_pages_render_filter_and_page_offline(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    corpus, folder = site
    index = json.loads((corpus / "dataset.json").read_text())
    browser.get((folder / "index.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
    assert sorted(r.find_element(By.TAG_NAME, "a").text for r in rows) == sorted(index["per_task"])
    assert "4 sequences" in browser.find_element(By.ID, "totals").text
    assert "occluded by a transient object" in browser.page_source  # frame drop reasons
    browser.find_element(By.ID, "task-filter").send_keys("paint")
    shown = [r.find_element(By.TAG_NAME, "a").text for r in rows if r.is_displayed()]
    assert sorted(shown) == ["oil-painting", "painting"]
    shot(browser, "review-index.png")

    browser.get((folder / "task-portrait.html").as_uri())
    # The page's script draws the cards; on a loaded machine that can finish after the load event.
    WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#cards .card"))
    cards = browser.find_elements(By.CSS_SELECTOR, "#cards .card")
    assert len(cards) == 1 and browser.find_element(By.ID, "count").text == "1 of 1 sequences"
    steps = [li.text for li in cards[0].find_elements(By.CSS_SELECTOR, ".steps li")]
    assert len(steps) == 9 and all(s.endswith("s") for s in steps)  # source timestamps, in step order
    assert [float(s[:-1]) for s in steps] == sorted(float(s[:-1]) for s in steps)
    img = cards[0].find_element(By.TAG_NAME, "img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0

    browser.get((folder / "task-painting.html").as_uri())
    card = browser.find_element(By.CSS_SELECTOR, "#cards .card")
    assert [li.text for li in card.find_elements(By.CSS_SELECTOR, ".steps li")] == [
        f"step_{i:02d}.png" for i in range(1, 10)
    ]
    assert "excluded" in card.get_attribute("class")
    # a folder taken as given has no scores: no filter that could match nothing, no row of dashes
    assert not browser.find_element(By.ID, "f-score").is_displayed() and "–" not in card.text
    assert "drop: a band of the photo is missing (ann," in card.find_element(By.CLASS_NAME, "verdict").text
    shot(browser, "review-task-painting.png")

    browser.get((folder / "all.html").as_uri())

    def count() -> str:
        return browser.find_element(By.ID, "count").text

    def keys() -> list[str]:
        return [c.get_attribute("data-key") for c in browser.find_elements(By.CSS_SELECTOR, "#cards .card")]

    assert count() == "4 of 4 sequences" and len(keys()) == 2  # --page-size 2
    first = keys()
    browser.find_element(By.XPATH, "//div[@class='pager'][1]/button[2]").click()
    assert len(keys()) == 2 and not set(keys()) & set(first)
    Select(browser.find_element(By.ID, "f-task")).select_by_value("emoji")
    assert count() == "1 of 4 sequences" and keys()[0].startswith("emoji_")
    Select(browser.find_element(By.ID, "f-task")).select_by_value("")
    browser.find_element(By.ID, "f-source").send_keys("astro")
    assert count() == "1 of 4 sequences" and keys() == [k for k in keys() if "_astro_" in k]
    browser.find_element(By.ID, "f-source").clear()
    browser.find_element(By.ID, "f-source").send_keys("127.0.0.1")  # the URL source, by its URI
    assert count() == "1 of 4 sequences" and keys()[0].startswith("oil-painting_coffee")
    browser.find_element(By.ID, "f-source").clear()
    Select(browser.find_element(By.ID, "f-score")).select_by_value("gain")
    browser.find_element(By.ID, "f-min").send_keys("0.2")
    assert count() == "2 of 4 sequences"  # the two videos; folders have no process gain
    browser.find_element(By.ID, "f-min").clear()
    browser.find_element(By.ID, "f-excluded").click()
    assert count() == "3 of 4 sequences"
    shot(browser, "review-all.png")

    browser.get((folder / "task-portrait.html").as_uri())  # a video: its process scores are offered
    WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#cards .card"))
    offered = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#f-score option")]
    assert (
        "gain" in offered
        and "elements" not in offered
        and "–" not in browser.find_element(By.ID, "cards").text
    )

    browser.get((folder / "rejected.html").as_uri())
    assert "no making process found" in browser.find_element(By.ID, "rejected").text
    urls = requests(browser)
    assert urls and all(u.startswith("file://") for u in urls), [
        u for u in urls if not u.startswith("file://")
    ]


def test_a_page_offers_the_scores_its_sequences_have():
    """A drawing has only its element counts, a folder taken as given none: the filter lists what exists."""
    from pipeline.review.collect import present_scores

    drawing = {"sc": {"gain": None, "clip": None, "elements": 7, "visible_additions": 6}}
    folder = {"sc": {"gain": None, "clip": None, "elements": None}}
    video = {"sc": {"gain": 0.8, "clip": 31.0, "elements": None}}
    assert present_scores([drawing, folder]) == ["elements", "visible_additions"]
    assert present_scores([folder]) == []
    assert present_scores([video, drawing]) == ["gain", "clip", "elements", "visible_additions"]


def test_a_later_run_reuses_thumbnails(site, capsys):
    corpus, folder = site
    capsys.readouterr()
    assert main(["review", str(corpus), "--out", str(folder), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["thumbs_written"] == 0 and stats["thumbs_reused"] == 4 and stats["sequences"] == 4


def test_review_of_a_folder_that_is_not_a_corpus_is_exit_2(tmp_path, capsys):
    assert main(["review", str(tmp_path), "--out", str(tmp_path / "site")]) == 2
    assert "no dataset.json" in capsys.readouterr().err
