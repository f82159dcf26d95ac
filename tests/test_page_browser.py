"""The status page in a real Chromium (Playwright driving Debian's chromium) against a running
`sorter sim`: real Modbus, cameras, timing process, records and HTTP. What a supervisor does on the
floor: read the numbers, switch the language, log in, disable a chute, key a no-read; what a viewer
cannot do; hostile barcode text shown as text. Screenshots go to the test's tmp dir
(`ls $(pytest --basetemp ...)/.../shots` or the path printed on failure)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from sorter.controller.cli import users as users_cli
from sorter.controller.config.load import load_config
from sorter.controller.records.store import RecordStore
from tests.browser import Page, chromium, missing
from tests.conftest import ROOT
from tests.test_keying import EVIL
from tests.test_sim_e2e import sim_config

pytestmark = [pytest.mark.line, pytest.mark.skipif(missing() is not None, reason=missing() or "")]
TOKEN = "browser-test-token-42"
PASSWORDS = {"sam": "super-pass-1", "vera": "viewer-pass-1"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory, free_port):
    tmp = tmp_path_factory.mktemp("browser")
    cfg_path = sim_config(tmp)
    data = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    # half what the line can go (a loaded test machine beside a browser), and more labels missing:
    # no-reads to key
    data["sim"].update({"rate_pph": 4800, "p_missing_label": 0.2})
    cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    cfg = load_config(cfg_path)
    users_cli.add_user(cfg, "sam", "supervisor", PASSWORDS["sam"])
    users_cli.add_user(cfg, "vera", "viewer", PASSWORDS["vera"])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sorter", "sim", "--config", str(cfg_path), "--port", str(port),
                             "--host", "127.0.0.1"], cwd=ROOT, env=dict(os.environ, SORTER_API_TOKEN=TOKEN),
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "sim.log", "w"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp / "sim.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the simulation did not sort parcels in time"
            try:
                st = httpx.get(url + "/api/status", timeout=3).json()
                if (st.get("counts") or {}).get("total", 0) >= 10:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        shots = tmp / "shots"
        shots.mkdir()
        with chromium() as browser:
            yield {"url": url, "cfg": cfg, "browser": browser, "shots": shots, "tmp": tmp}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def status(sim) -> dict:
    return httpx.get(sim["url"] + "/api/status", timeout=5).json()


def api(sim, path: str, **params) -> object:
    return httpx.post(sim["url"] + path, params=params, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def login(sim, name: str) -> Page:
    p = Page(sim["browser"], sim["url"])
    p.page.goto("/login?next=/", wait_until="domcontentloaded")
    p.page.fill("#name", name)
    p.page.fill("#password", PASSWORDS[name])
    p.page.click("#login-btn")
    p.page.wait_for_url(sim["url"] + "/", wait_until="domcontentloaded")
    # a function, not an expression: the page's CSP (no eval) refuses Playwright's polling of a string
    p.page.wait_for_function("(n) => document.getElementById('user-name').textContent.indexOf(n) >= 0", arg=name)
    return p


def wait_settled(sim, quiet_s: float = 4.0, timeout: float = 90) -> dict:
    """Induction paused: wait until the parcels on the belt have all ended (the total stands still)."""
    end = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < end:
        st = status(sim)
        total = st["counts"]["total"]
        if total != last:
            last, since = total, time.monotonic()
        elif time.monotonic() - since >= quiet_s and not st["records"]["in_flight"]:
            return st
        time.sleep(0.5)
    raise AssertionError("the line did not settle after the pause")


def test_a_viewer_cannot_control(sim):
    p = login(sim, "vera")
    try:
        pg = p.page
        pg.wait_for_selector(".chute .c-disable")
        assert pg.is_disabled(".chute .c-disable") and pg.is_disabled("#pause-btn")
        # the API refuses whatever the page's buttons say
        res = pg.evaluate("""async () => (await window.Sorter.post('/api/chutes/C01/disable')).status""")
        assert res == 403
        assert all(c["enabled"] for c in status(sim)["chutes"])
        pg.screenshot(path=str(sim["shots"] / "viewer.png"), full_page=True)
    finally:
        p.close()


def test_supervisor_disables_a_chute_and_it_gets_no_more_parcels(sim):
    st = status(sim)
    busiest = max((c for c in st["chutes"] if c["id"] not in ("MANUAL", "REJECT")), key=lambda c: c["count"])
    cid = busiest["id"]
    p = login(sim, "sam")
    try:
        pg = p.page
        pg.click(f".chute[data-chute='{cid}'] .c-disable")
        pg.wait_for_selector(f".chute.disabled[data-chute='{cid}']")
        assert p.confirms and cid in p.confirms[-1]                       # it stops sorting: asked first
        disabled_at = time.time()
        time.sleep(4)                                                     # parcels already decided arrive
        before = next(c for c in status(sim)["chutes"] if c["id"] == cid)["count"]
        total0 = status(sim)["counts"]["total"]
        deadline = time.monotonic() + 120
        while status(sim)["counts"]["total"] < total0 + 15:
            assert time.monotonic() < deadline, "the line stopped sorting"
            time.sleep(1)
        assert next(c for c in status(sim)["chutes"] if c["id"] == cid)["count"] == before
        with RecordStore(sim["cfg"].records.database) as store:
            late = [r for r in store.search(chute=cid, since_wall=disabled_at + 4, limit=1000)]
        assert late == []
        audit = httpx.get(sim["url"] + "/api/audit").json()
        assert any(a["user"] == "sam" and a["action"] == "chute_disable" and a["target"] == cid for a in audit)
        pg.wait_for_selector("#audit td:has-text('chute_disable')")
        pg.screenshot(path=str(sim["shots"] / "chute-disabled.png"), full_page=True)
        pg.click(f".chute[data-chute='{cid}'] .c-enable")
        pg.wait_for_selector(f".chute[data-chute='{cid}']:not(.disabled)")
        assert not p.unexpected_dialogs and not p.errors
    finally:
        p.close()


def test_keying_a_no_read_completes_its_record(sim):
    deadline = time.monotonic() + 120
    while True:
        rows = httpx.get(sim["url"] + "/api/review").json()
        if any(r["outcome"] == "no_read" for r in rows):
            break
        assert time.monotonic() < deadline, "no no_read parcel in two minutes"
        time.sleep(2)
    with RecordStore(sim["cfg"].records.database) as store:
        sorted_one = store.search(outcome="sorted", limit=1)[0]
    p = login(sim, "sam")
    try:
        pg = p.page
        pg.wait_for_selector(".review-item .key-input")
        card = pg.locator(".review-item").filter(has=pg.locator(".pill.no_read")).first
        ref = card.get_attribute("data-parcel")
        run_id, pid = ref.split("/")
        card.locator(".key-input").fill(EVIL)                              # refused, and shown as text
        card.locator("button[type=submit]").click()
        card.locator(".msg:has-text('not a waybill')").wait_for()
        card.locator(".key-input").fill(sorted_one["waybill"])
        card.locator("button[type=submit]").click()
        card.locator(".msg:has-text('✓')").wait_for()
        story = httpx.get(f"{sim['url']}/api/parcels/{run_id}/{pid}").json()
        assert story["outcome"] == "no_read" and story["keyed"]["waybill"] == sorted_one["waybill"]
        assert story["keyed"]["chute"] == sorted_one["chute"] and story["keyed"]["by"] == "sam"
        pg.goto(f"/parcel?run={run_id}&id={pid}", wait_until="domcontentloaded")
        pg.wait_for_selector(f"dd:has-text('{sorted_one['waybill']}')")
        pg.screenshot(path=str(sim["shots"] / "parcel-story.png"), full_page=True)
        assert not p.unexpected_dialogs and not p.errors
    finally:
        p.close()


def test_hostile_text_renders_as_text(sim):
    with RecordStore(sim["cfg"].records.database) as store:
        store.write_many([{"run_id": "evil", "parcel_id": 1, "ended_wall": time.time(), "outcome": "no_route",
                           "waybill": EVIL, "destination": EVIL, "carrier": EVIL, "reason": EVIL,
                           "reads": [{"camera": "top", "symbology": "qrcode", "text": EVIL}]}])
    p = Page(sim["browser"], sim["url"])
    try:
        pg = p.page
        pg.goto("/", wait_until="domcontentloaded")
        pg.fill("#search-form input[name=waybill]", EVIL)
        pg.click("#search-form button[type=submit]")
        cell = pg.locator("#search-results td.waybill").first
        cell.wait_for()
        assert cell.text_content() == EVIL
        assert pg.locator("#search-results img").count() == 0
        pg.goto("/parcel?run=evil&id=1", wait_until="domcontentloaded")
        pg.wait_for_selector("ul.reads li")
        assert EVIL in pg.locator("ul.reads li").first.text_content()
        assert pg.locator("main img").count() == 0
        pg.wait_for_timeout(500)
        assert p.unexpected_dialogs == [] and p.errors == []
        csp = httpx.get(sim["url"] + "/parcel").headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    finally:
        p.close()


def refused_advice_alarm(sim) -> dict:
    """A carrier's advice file the inbox refuses (no waybill column): an alarm the line raises
    while it goes on sorting, with a detail in parameters (the file's name, the reason)."""
    from sorter.controller.config.routing import manifest_inbox_folder
    box = manifest_inbox_folder(sim["cfg"].routing, sim=True)
    part = box / "carrier-x.csv.part"
    part.write_text("foo,bar\n1,2\n", encoding="utf-8")
    part.rename(box / "carrier-x.csv")   # complete: the inbox takes it
    end = time.monotonic() + 60
    while time.monotonic() < end:
        alarm = next((a for a in status(sim).get("alarms", []) if a.get("id") == "manifest_inbox"), None)
        if alarm:
            return alarm
        time.sleep(0.5)
    raise AssertionError("the refused advice file raised no alarm")


def test_language_switch_is_remembered(sim):
    alarm = refused_advice_alarm(sim)
    assert alarm["detail"] == "manifest_inbox.refused" and alarm["params"]["file"] == "carrier-x.csv", alarm
    p = Page(sim["browser"], sim["url"])
    try:
        pg = p.page
        pg.goto("/", wait_until="domcontentloaded")
        pg.wait_for_selector(".oc-row[data-outcome=sorted]")
        assert pg.text_content("[data-i18n='k.throughput']") == "处理量"
        assert pg.text_content(".oc-row[data-outcome=no_read] .oc-name") == "无读码"
        # the alarm's detail in the page's language, from the key and parameters the server sent
        said = pg.text_content("[data-alarm=manifest_inbox] .a-text", timeout=20_000)
        assert said.startswith("预报文件 carrier-x.csv 被拒绝") and "header" in said, said
        pg.click("#lang-link")
        pg.wait_for_function("() => document.documentElement.lang === 'en'")
        assert pg.text_content("[data-i18n='k.throughput']") == "Throughput"
        pg.wait_for_selector(".oc-row[data-outcome=no_read]")
        assert pg.text_content(".oc-row[data-outcome=no_read] .oc-name") == "no read"
        said = pg.text_content("[data-alarm=manifest_inbox] .a-text", timeout=20_000)
        assert said.startswith("advice file carrier-x.csv refused: ") and "header" in said, said
        pg.goto("/", wait_until="domcontentloaded")                      # no ?lang: remembered
        pg.wait_for_selector(".oc-row[data-outcome=no_read]")
        assert pg.text_content("[data-i18n='k.throughput']") == "Throughput"
        pg.goto("/?lang=zh", wait_until="domcontentloaded")
        assert pg.text_content("[data-i18n='k.throughput']") == "处理量"
    finally:
        p.close()


def test_the_alarm_history_says_a_past_alarm_in_the_pages_language(sim):
    """The history, opened on the page, shows an alarm as the live list does: its detail in the
    page's language from the key and parameters the history kept, the server's English on hover."""
    refused_advice_alarm(sim)
    p = Page(sim["browser"], sim["url"])
    try:
        pg = p.page
        for lang, words in (("zh", "预报文件 carrier-x.csv 被拒绝"), ("en", "advice file carrier-x.csv refused: ")):
            pg.goto(f"/?lang={lang}", wait_until="domcontentloaded")
            pg.wait_for_selector(".oc-row[data-outcome=sorted]")
            pg.click("#history-box summary")
            row = pg.locator("#alarm-history li.alarm", has_text="carrier-x.csv").first
            row.wait_for(timeout=20_000)
            said = row.locator(".a-text").text_content()
            assert said.startswith(words) and "header" in said, (lang, said)
            title = row.locator(".a-title").text_content()
            assert title and "manifest_inbox" not in title, title       # the code's words, not the code
            if lang == "zh":
                assert row.locator(".a-text").get_attribute("title").startswith("advice file carrier-x.csv refused")
            assert row.locator("button").count() == 0                     # history: nothing to press
        shot = sim["shots"] / "alarm-history.png"
        pg.screenshot(path=str(shot), full_page=True)
        assert p.errors == [], p.errors
    finally:
        p.close()


def test_numbers_shown_match_the_status_and_phone_and_wall_layouts(sim):
    assert api(sim, "/api/pause").status_code == 200
    try:
        st = wait_settled(sim)
        p = Page(sim["browser"], sim["url"])
        try:
            pg = p.page
            pg.goto("/?lang=en", wait_until="domcontentloaded")
            pg.wait_for_function("(t) => document.getElementById('k-total').textContent === t",
                                 arg=f"{st['counts']['total']:,}")
            oc = st["counts"]["outcomes"]
            assert pg.text_content("#k-sorted") == f"{oc['sorted']:,}"
            for key, n in oc.items():
                assert pg.text_content(f".oc-row[data-outcome={key}] .oc-n") == f"{n:,}"
            for c in st["chutes"]:
                assert pg.text_content(f".chute[data-chute='{c['id']}'] .c-count") == f"{c['count']:,}"
            assert pg.text_content("#state-badge .en") == "PAUSED"
            # each camera's name opens its last frame (the codes read in it outlined)
            for cam in st["cameras"]:
                href = pg.get_attribute(f"a.cam-last:text-is('{cam['name']}')", "href")
                r = httpx.get(sim["url"] + href, timeout=10)
                assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
            pg.screenshot(path=str(sim["shots"] / "page-en.png"), full_page=True)
        finally:
            p.close()
        phone = Page(sim["browser"], sim["url"], width=360, height=740)
        try:
            phone.page.goto("/", wait_until="domcontentloaded")
            phone.page.wait_for_selector("#recent tr")
            # the tables scroll inside their panels; the page itself never scrolls sideways
            assert phone.page.evaluate("document.documentElement.scrollWidth") <= 360
            phone.page.screenshot(path=str(sim["shots"] / "phone-360.png"), full_page=True)
        finally:
            phone.close()
        wall = Page(sim["browser"], sim["url"], width=1920, height=1080)
        try:
            wall.page.goto("/?kiosk=1", wait_until="domcontentloaded")
            wall.page.wait_for_selector("body.kiosk .chute")
            size = wall.page.evaluate("parseFloat(getComputedStyle(document.getElementById('k-total')).fontSize)")
            assert size >= 48                                          # read from a few metres
            assert wall.page.evaluate("document.documentElement.scrollWidth") <= 1920
            wall.page.screenshot(path=str(sim["shots"] / "kiosk-1080p.png"))
        finally:
            wall.close()
    finally:
        assert api(sim, "/api/resume").status_code == 200


def test_the_route_table_panel_routes_a_waybill_and_shows_a_refused_file(sim):
    """Where does this parcel go? A supervisor asks on the page and gets the router's answer for a
    parcel the line sorted; a viewer sees the table but cannot ask (it tells the carriers' advice).
    A route file saved with a mistake: the page says beside the table in force why it was refused,
    and the mistake goes from the page once the file is put right."""
    with RecordStore(sim["cfg"].records.database) as store:
        done = next(r for r in store.search(outcome="sorted", limit=50) if r.get("waybill"))
    answer = httpx.post(sim["url"] + "/api/routes/test", json={"waybill": done["waybill"]},
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    assert answer["outcome"] == "sorted" and answer["destination"] == done["destination"], (answer, done)
    v = login(sim, "vera")
    try:
        v.page.wait_for_selector("#routes-summary:has-text('规则')", timeout=20_000)
        assert v.page.is_disabled("#route-test-btn")
    finally:
        v.close()
    routes = sim["cfg"].routing.routes
    good = routes.read_text(encoding="utf-8")
    p = login(sim, "sam")
    try:
        pg = p.page
        pg.fill("#route-test-form input[name=waybill]", done["waybill"])
        pg.click("#route-test-btn")
        said = pg.locator("#route-result .route-answer")
        said.wait_for(timeout=20_000)
        assert said.get_attribute("data-outcome") == "sorted"
        text = said.text_content()
        assert answer["chute"] in text and done["destination"] in text and "已分拣" in text, text
        assert pg.is_hidden("#routes-refused")
        routes.write_text("rules: []\n", encoding="utf-8")                  # a mistake saved over the table
        box = pg.locator("#routes-refused")
        box.wait_for(state="visible", timeout=40_000)
        assert "no rules" in box.text_content() and "仍按当前路由表分拣" in box.text_content(), box.text_content()
        assert "0 条规则" not in pg.text_content("#routes-summary")         # the table in force is still shown
        pg.screenshot(path=str(sim["shots"] / "routes-refused.png"), full_page=True)
        routes.write_text(good, encoding="utf-8")                           # put right
        box.wait_for(state="hidden", timeout=40_000)
        assert not p.unexpected_dialogs and not p.errors
    finally:
        routes.write_text(good, encoding="utf-8")
        p.close()
