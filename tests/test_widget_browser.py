"""The demo page and the ``<related-trials>`` widget in Debian's headless Chromium, via Playwright.

The real server runs on 127.0.0.1 (a free port) in a background thread. The browser is the
system's ``/usr/bin/chromium`` (apt packages ``chromium`` and ``chromium-driver``), never one
downloaded by ``playwright install``.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SEED = "NCT02213705"
DEMO_K = 5
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium: apt-get install chromium chromium-driver"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install -e '.[dev]')")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def host_site(tmp_path_factory):
    """Another origin (a plain static server) whose pages embed the widget: (root dir, origin)."""
    root = tmp_path_factory.mktemp("site")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def base_url(index_dir, host_site):
    from similarity.service import serve_in_thread

    with serve_in_thread(index_dir, cors_origins=[host_site[1]]) as url:
        yield url


@pytest.fixture(scope="module")
def api(base_url):
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def api_ids(api, nct_id: str, **params) -> list[str]:
    response = api.get(f"/trials/{nct_id}/related", params=params)
    response.raise_for_status()
    return [item["nct_id"] for item in response.json()["related"]]


def shown(page, selector: str = "related-trials#related") -> list[dict]:
    """The items the widget shows: NCT ID, title, link, status and phase badges."""
    return page.eval_on_selector(
        selector,
        """host => [...host.shadowRoot.querySelectorAll('li.item')].map(li => ({
            nct_id: li.dataset.nctId,
            title: li.querySelector('a').textContent,
            href: li.querySelector('a').href,
            status: li.querySelector('[data-status]')?.dataset.status ?? null,
            phase: li.querySelector('[data-phase]')?.dataset.phase ?? null,
            why: li.querySelector('.why')?.textContent ?? null,
        }))""",
    )


def wait_for_ids(page, expected: list[str], selector: str = "related-trials#related") -> None:
    """Wait until the widget is ready and shows exactly ``expected``."""
    page.wait_for_function(
        """([selector, want]) => {
            const host = document.querySelector(selector);
            if (!host || host.getAttribute('state') !== 'ready') return false;
            const got = [...host.shadowRoot.querySelectorAll('li.item')].map(li => li.dataset.nctId);
            return JSON.stringify(got) === JSON.stringify(want);
        }""",
        arg=[selector, expected],
    )


def open_demo(page, base_url: str, nct_id: str = SEED):
    response = page.goto(f"{base_url}/demo/{nct_id}")
    page.wait_for_selector("related-trials#related:is([state=ready], [state=error], [state=empty])")
    return response


def test_demo_page_shows_the_trial_and_its_related_list(page, base_url, api, index):
    response = open_demo(page, base_url)
    assert response.status == 200
    trial = index.trial(SEED)
    assert page.locator("h1").inner_text() == trial.title
    assert page.get_by_role("heading", name="More Related Trials").is_visible()
    expected = api_ids(api, SEED, k=DEMO_K)
    items = shown(page)
    assert [i["nct_id"] for i in items] == expected and len(items) == DEMO_K
    for item in items:
        assert item["href"] == f"https://clinicaltrials.gov/study/{item['nct_id']}"
        assert item["title"] == index.trial(item["nct_id"]).title and item["why"]
    first = page.get_by_role("link", name=items[0]["title"], exact=True)
    assert first.get_attribute("href") == items[0]["href"]
    assert page.get_by_role("list", name="Related trials").get_by_role("listitem").count() == DEMO_K


def test_status_filter_changes_the_list(page, base_url, api):
    open_demo(page, base_url)
    unfiltered = api_ids(api, SEED, k=DEMO_K)
    options = page.eval_on_selector_all("select[name=status] option", "os => os.map(o => o.value).filter(Boolean)")
    choice = next(
        (v for v in options if "," not in v and api_ids(api, SEED, k=DEMO_K, status=v) not in ([], unfiltered)),
        None,
    )
    assert choice, "the fixture index should hold a status that changes the list"
    with page.expect_response(lambda r: "/related" in r.url and f"status={choice}" in r.url):
        page.select_option("select[name=status]", choice)
    expected = api_ids(api, SEED, k=DEMO_K, status=choice)
    wait_for_ids(page, expected)
    assert expected != unfiltered
    assert {item["status"] for item in shown(page)} == {choice}
    assert page.get_attribute("related-trials#related", "status") == choice


def test_multi_value_filter_and_reset(page, base_url, api):
    open_demo(page, base_url)
    statuses = ["RECRUITING", "NOT_YET_RECRUITING", "ENROLLING_BY_INVITATION"]
    expected = api_ids(api, SEED, k=DEMO_K, status=statuses)
    page.select_option("select[name=status]", ",".join(statuses))
    if expected:
        wait_for_ids(page, expected)
    else:
        page.wait_for_selector("related-trials#related[state=empty]")
    assert {item["status"] for item in shown(page)} <= set(statuses)
    page.select_option("select[name=status]", "")
    wait_for_ids(page, api_ids(api, SEED, k=DEMO_K))
    assert page.get_attribute("related-trials#related", "status") is None


def test_phase_filter_keeps_matching_phases(page, base_url, api):
    open_demo(page, base_url)
    expected = api_ids(api, SEED, k=DEMO_K, phase="PHASE2")
    page.select_option("select[name=phase]", "PHASE2")
    if expected:
        wait_for_ids(page, expected)
    else:
        page.wait_for_selector("related-trials#related[state=empty]")
    assert all("PHASE2" in item["phase"].split("/") for item in shown(page))


def test_unknown_trial_shows_the_error_state(page, base_url):
    response = open_demo(page, base_url, "NCT00000000")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Trial not found"
    assert page.get_attribute("related-trials#related", "state") == "error"
    alert = page.get_by_role("alert")
    assert alert.inner_text() == "No trial NCT00000000 in the index."
    assert shown(page) == []


def test_keyboard_focus_reaches_the_links(page, base_url):
    open_demo(page, base_url)
    titles = [item["title"] for item in shown(page)]
    focused = None
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => {
                const host = document.activeElement;
                const link = host && host.shadowRoot ? host.shadowRoot.activeElement : null;
                if (!link || link.tagName !== 'A') return null;
                const style = getComputedStyle(link);
                return {title: link.textContent, outline: style.outlineStyle, width: style.outlineWidth};
            }"""
        )
        if focused:
            break
    assert focused, "Tab never reached a link in the widget"
    assert focused["title"] == titles[0]
    assert focused["outline"] != "none" and focused["width"] != "0px", "no visible focus style"
    page.keyboard.press("Tab")
    following = page.evaluate("() => document.activeElement.shadowRoot.activeElement.textContent")
    assert following == titles[1]


def test_loading_state_is_announced(page, base_url, api):
    pending = []
    page.route("**/trials/*/related*", lambda route: pending.append(route))
    page.goto(f"{base_url}/demo/{SEED}")
    page.wait_for_selector("related-trials#related[state=loading]")
    status = page.get_by_role("status")
    assert status.inner_text().strip() == "Loading related trials\u2026"
    busy = page.eval_on_selector("related-trials#related", "h => h.shadowRoot.querySelector('[aria-live]').getAttribute('aria-busy')")
    assert busy == "true"
    for _ in range(100):  # the route handler runs while Playwright waits
        if pending:
            break
        page.wait_for_timeout(50)
    assert pending, "the widget did not request its list"
    pending[0].continue_()
    wait_for_ids(page, api_ids(api, SEED, k=DEMO_K))
    busy = page.eval_on_selector("related-trials#related", "h => h.shadowRoot.querySelector('[aria-live]').getAttribute('aria-busy')")
    assert busy == "false"


def test_one_tag_embed_re_renders_on_attribute_changes(page, base_url, api, index):
    open_demo(page, base_url)
    page.evaluate(
        """nct => {
            const widget = document.createElement('related-trials');
            widget.id = 'embedded';
            widget.setAttribute('nct-id', nct);
            widget.setAttribute('k', '2');
            document.body.append(widget);
        }""",
        SEED,
    )
    wait_for_ids(page, api_ids(api, SEED, k=2), "#embedded")
    heading = page.eval_on_selector("#embedded", "h => h.shadowRoot.querySelector('h2').textContent")
    assert heading == "More Related Trials"
    page.eval_on_selector("#embedded", "h => h.setAttribute('k', '3')")
    wait_for_ids(page, api_ids(api, SEED, k=3), "#embedded")
    other = next(t.nct_id for t in index.trials if t.nct_id != SEED)
    page.eval_on_selector("#embedded", "(h, id) => h.setAttribute('nct-id', id.toLowerCase())", other)
    wait_for_ids(page, api_ids(api, other, k=3), "#embedded")


def test_one_tag_embed_on_another_site(page, base_url, host_site, api):
    root, origin = host_site
    (root / "embed.html").write_text(
        f'<!doctype html><html lang="en"><title>A host page</title>'
        f'<script src="{base_url}/widget.js" defer></script>'
        f'<related-trials nct-id="{SEED}" k="3"></related-trials></html>'
    )
    page.goto(f"{origin}/embed.html")  # the API base comes from the script's URL; CORS lets it in
    wait_for_ids(page, api_ids(api, SEED, k=3), "related-trials")
    assert page.get_by_role("heading", name="More Related Trials").is_visible()


def test_registry_filter_attributes_reach_the_api(page, base_url, api):
    open_demo(page, base_url)
    params = {"country": ["united states"], "recruiting_only": "true", "age": "40", "sex": "female",
              "start_after": "1990"}
    expected = api_ids(api, SEED, k=DEMO_K, **params)
    unfiltered = api_ids(api, SEED, k=DEMO_K)
    with page.expect_response(lambda r: "/related" in r.url and "recruiting_only=true" in r.url) as answer:
        page.eval_on_selector(
            "related-trials#related",
            """host => { host.setAttribute('country', 'united states | Narnia'); host.setAttribute('age', '40');
                         host.setAttribute('sex', 'female'); host.setAttribute('start-after', '1990');
                         host.setAttribute('recruiting-only', ''); }""",
        )
    url = answer.value.url
    assert "country=united+states" in url and "country=Narnia" in url and "age=40" in url
    assert "sex=female" in url and "start_after=1990" in url
    if expected:
        wait_for_ids(page, expected)
    else:
        page.wait_for_selector("related-trials#related[state=empty]")
    assert expected != unfiltered


def test_search_box_lists_the_trials_related_to_typed_text(page, base_url, api):
    open_demo(page, base_url)
    query = "Ganciclovir for cytomegalovirus retinitis"
    response = api.get("/search", params={"q": query, "k": DEMO_K})
    response.raise_for_status()
    expected = [item["nct_id"] for item in response.json()["related"]]
    box = page.get_by_role("searchbox", name="Search trials by text")
    assert box.is_visible()
    with page.expect_response(lambda r: "/search?" in r.url and "q=Ganciclovir" in r.url):
        box.fill(query)
        box.press("Enter")
    wait_for_ids(page, expected)
    assert page.eval_on_selector("related-trials#related", "h => h.getAttribute('query')") == query
    read_as = page.eval_on_selector("related-trials#related", "h => h.shadowRoot.querySelector('.read-as').textContent")
    assert read_as.startswith("Read as: ") and "intervention Ganciclovir" in read_as
    assert "condition cytomegalovirus retinitis" in read_as
    # the demo page's filters apply to the search too
    with page.expect_response(lambda r: "/search?" in r.url and "phase=PHASE3" in r.url):
        page.select_option("#related-filters select[name=phase]", "PHASE3")
    filtered = api.get("/search", params={"q": query, "k": DEMO_K, "phase": "PHASE3"}).json()["related"]
    wait_for_ids(page, [item["nct_id"] for item in filtered])
    page.select_option("#related-filters select[name=phase]", "")
    box.fill("")  # an empty search goes back to the trial's own list
    box.press("Enter")
    wait_for_ids(page, api_ids(api, SEED, k=DEMO_K))
    assert page.eval_on_selector("related-trials#related", "h => h.hasAttribute('query')") is False


def test_search_widget_without_a_trial_waits_then_shows_refusals(page, base_url):
    open_demo(page, base_url)
    page.evaluate(
        """() => {
            const widget = document.createElement('related-trials');
            widget.id = 'finder';
            widget.setAttribute('search', '');
            document.body.append(widget);
        }"""
    )
    page.wait_for_selector("#finder[state=idle]")
    assert "Type a few words" in page.eval_on_selector("#finder", "h => h.shadowRoot.textContent")
    page.eval_on_selector("#finder", "h => h.setAttribute('query', '1234')")
    page.wait_for_selector("#finder[state=error]")
    message = page.eval_on_selector("#finder", "h => h.shadowRoot.querySelector('[role=alert]').textContent")
    assert message.startswith("Invalid request") and "no letter" in message


def test_aspect_selector_lists_the_trials_related_by_that_aspect(page, base_url, api):
    open_demo(page, base_url)
    selector = page.get_by_role("combobox", name="Related by")
    assert selector.is_visible() and selector.input_value() == "overall"
    expected = api_ids(api, SEED, k=DEMO_K, aspect="intervention")
    assert expected != api_ids(api, SEED, k=DEMO_K)
    with page.expect_response(lambda r: "/related?" in r.url and "aspect=intervention" in r.url):
        selector.select_option("intervention")
    wait_for_ids(page, expected)
    assert page.eval_on_selector("related-trials#related", "h => h.getAttribute('aspect')") == "intervention"
    whys = [item["why"] for item in shown(page)]
    assert all(w.lower().startswith(("same intervention", "similar intervention")) for w in whys)
    selector.select_option("overall")
    wait_for_ids(page, api_ids(api, SEED, k=DEMO_K))
    assert page.eval_on_selector("related-trials#related", "h => h.hasAttribute('aspect')") is False
