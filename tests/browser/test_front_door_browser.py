"""The front door in a real headless browser (issue 15 acceptance): open `/`, follow the API
docs link, set a token and the tenant, execute `GET /api/v1/orders?patientId=…` from the docs
page and see a 200. A screenshot of the answered call is left in `test-artifacts/`.

Debian's chromium and chromium-driver (installed by scripts/browser.sh, which `make test`
runs), driven by Selenium with the driver's path given, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from app.auth.devkeys import mint_token
from tests.conftest import LiveServer
from tests.legacy_data import LegacyApi, lab

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,2000",
)
WAIT = 30


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _visible(driver: WebDriver, css: str, within: Any = None) -> WebElement:
    root = within or driver
    return WebDriverWait(driver, WAIT).until(
        lambda _d: next(
            (e for e in root.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()), False
        )
    )


def test_an_integrator_tries_a_call_from_the_api_docs(
    app: Flask, client: FlaskClient, browser: WebDriver, headers: Any
) -> None:
    api = LegacyApi(client, headers)
    pid, eid = api.admitted()
    api.created(lab(pid, eid))
    tenant = api.doc["X-Tenant-ID"]
    token = mint_token(app.config["SETTINGS"], roles=("CLINICIAN",), tenants=(tenant,))

    with LiveServer(app) as server:
        browser.get(f"{server.url}/")
        assert "Orders service" in browser.title
        browser.find_element(By.LINK_TEXT, "Interactive API docs (/api/v1)").click()
        WebDriverWait(browser, WAIT).until(ec.url_contains("/docs/api"))

        _visible(browser, ".btn.authorize").click()
        for container in browser.find_elements(By.CSS_SELECTOR, ".auth-container"):
            text = container.text
            field = container.find_element(By.CSS_SELECTOR, "input[type=text]")
            if "bearerAuth" in text:
                field.send_keys(token)
            elif "tenantHeader" in text:
                field.send_keys(tenant)
        for button in browser.find_elements(By.CSS_SELECTOR, ".modal-btn.auth.authorize"):
            button.click()
        _visible(browser, ".btn-done").click()

        operation = _visible(browser, ".opblock-get:has([data-path='/orders'])")
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        _visible(browser, ".try-out__btn", operation).click()
        patient_field = _visible(browser, "input[placeholder='patientId']", operation)
        patient_field.clear()  # Swagger UI may prefill the schema's example
        patient_field.send_keys(pid)
        _visible(browser, ".btn.execute", operation).click()
        status = _visible(
            browser, ".live-responses-table tr.response .response-col_status", operation
        )
        WebDriverWait(browser, WAIT).until(lambda _d: status.text.strip() != "")
        operation.location_once_scrolled_into_view  # noqa: B018 - scrolls for the screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "front-door-api-docs-orders.png"))
        assert status.text.strip() == "200", operation.text[-1500:]
        body = operation.find_element(By.CSS_SELECTOR, ".live-responses-table .microlight").text
        assert '"total": 1' in body or '"total":1' in body, body[:500]
