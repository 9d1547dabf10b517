//! The web console in a real browser: Debian's headless Chromium, driven
//! through chromedriver (WebDriver) by fantoccini, against a real `berth
//! up` with two claims of `berth serve` behind the HTTPS load balancer.
//! `scripts/test` installs chromium and chromium-driver; without them this
//! test fails, it never skips.
//!
//! With `BERTH_CONSOLE_SCREENSHOTS=DIR` it also saves the overview and a
//! claim's timeline there (the README's screenshots).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::site::{random_files, Site, DEADLINE, TWO_CLAIMS};
use crate::up_platform::desired_count;

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: scripts/test installs chromium and chromium-driver");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < DEADLINE, "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A laptop's screen, or (`phone`) a phone's: 375 CSS pixels wide, which
/// headless Chromium only gives through device emulation (its windows are
/// at least 500 pixels wide).
async fn browser(driver: &Driver, phone: bool) -> Client {
    let mut options = json!({
        "binary": "/usr/bin/chromium",
        // Root has no sandbox; /dev/shm is small in containers.
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1000"],
    });
    if phone {
        options["mobileEmulation"] = json!({ "deviceMetrics": { "width": 375, "height": 800, "pixelRatio": 2 } });
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    let http = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(http).capabilities(caps).connect(&driver.url).await.expect("a WebDriver session")
}

async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait().at_most(DEADLINE).for_element(Locator::Css(css)).await.unwrap_or_else(|e| {
        panic!("no element {css} within {DEADLINE:?}: {e}");
    })
}

/// Clicks `yes` in the console's confirmation dialog.
async fn confirm(c: &Client) {
    wait_css(c, "dialog#confirm[open]").await;
    c.find(Locator::Css("#confirm-yes")).await.unwrap().click().await.unwrap();
}

/// Runs `script` (which may return a promise) in the page.
async fn run(c: &Client, script: &str, args: Vec<Value>) -> Value {
    c.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// WebDriver's codes for the Tab and Enter keys.
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// Presses Tab until the focused element is the link named `text`.
async fn tab_to(c: &Client, text: &str) -> fantoccini::elements::Element {
    for _ in 0..40 {
        let focused = c.active_element().await.unwrap();
        if focused.tag_name().await.unwrap() == "a" && focused.text().await.unwrap().trim() == text {
            return focused;
        }
        focused.send_keys(TAB).await.unwrap();
    }
    panic!("no link {text:?} within 40 presses of Tab");
}

async fn screenshot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("BERTH_CONSOLE_SCREENSHOTS") {
        std::thread::sleep(Duration::from_millis(500)); // let the page's first reads land
        c.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

#[test]
fn the_console_logs_in_shows_claims_stops_scales_and_moves_files_and_refuses_forged_actions() {
    // With a backup policy, so the backups page has claims to chart.
    let site = Site::new(&format!("{TWO_CLAIMS}\n[service.backup]\ninterval = \"1h\"\n"));
    let _up = site.up(&[]);
    site.wait_serving("files-0", Some(1));
    site.wait_serving("files-1", Some(1));
    let admin: Value = serde_json::from_slice(&std::fs::read(site.state.join("admin.json")).unwrap()).unwrap();
    let admin = admin["url"].as_str().unwrap().to_owned();
    let driver = Driver::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = browser(&driver, false).await;

        // No session: the console sends the browser to its login page,
        // which refuses a wrong token and takes the right one.
        c.goto(&format!("{admin}/console")).await.unwrap();
        assert!(c.current_url().await.unwrap().path().ends_with("/console/login"));
        wait_css(&c, "#token").await.send_keys("not-the-token").await.unwrap();
        c.find(Locator::Css("#login")).await.unwrap().click().await.unwrap();
        let error = wait_css(&c, ".login-error").await.text().await.unwrap();
        assert!(error.contains("not this berth up's admin token"), "{error}");
        c.goto(&format!("{admin}/console")).await.unwrap();
        assert!(c.current_url().await.unwrap().path().ends_with("/console/login"), "a wrong token made no session");
        let token = std::fs::read_to_string(site.state.join("admin.token")).unwrap();
        wait_css(&c, "#token").await.send_keys(token.trim()).await.unwrap();
        c.find(Locator::Css("#login")).await.unwrap().click().await.unwrap();
        wait_css(&c, "#nav").await;
        assert!(c.current_url().await.unwrap().path().ends_with("/console"));

        // The overview; then, by keyboard alone, the claims.
        wait_css(&c, "table#services").await;
        wait_css(&c, "table#lb-targets tr[data-target]").await;
        screenshot(&c, "console-overview.png").await;
        tab_to(&c, "Claims").await.send_keys(ENTER).await.unwrap();
        wait_css(&c, "tr[data-claim='files-0']").await;
        assert!(c.current_url().await.unwrap().fragment() == Some("/claims"), "Enter on the focused link follows it");
        wait_css(&c, "tr[data-claim='files-1']").await;

        // Stop files-0's task as a Spot interruption from its page: the
        // timeline gains generation 2, with the handoff's measured RTO.
        c.goto(&format!("{admin}/console#/claims/files-0")).await.unwrap();
        wait_css(&c, "#generations tr[data-generation='1']").await;
        wait_css(&c, "#stop-reason").await.select_by_value("spot").await.unwrap();
        c.find(Locator::Css("button[data-action='stop']")).await.unwrap().click().await.unwrap();
        confirm(&c).await;
        let row = wait_css(&c, "#generations tr[data-generation='2'][data-rto-ms]:not([data-rto-ms=''])").await;
        let rto: f64 = row.attr("data-rto-ms").await.unwrap().unwrap().parse().unwrap();
        assert!(rto > 0.0, "a handoff's RTO is measured: {rto}");
        wait_css(&c, "svg#timeline g.generation[data-generation='2']").await;
        assert_eq!(site.claim("files-0")["generation"], 2, "the stop reached the controller");
        screenshot(&c, "console-claim.png").await;

        // A restore verification from the page lands in the backups
        // page's history, as a point of the RTO/RPO chart and a table row.
        c.find(Locator::Css("button[data-action='verify']")).await.unwrap().click().await.unwrap();
        c.goto(&format!("{admin}/console#/backups")).await.unwrap();
        wait_css(&c, "table.history-table[data-claim='files-0'][data-series='drills'] tr[data-time]").await;
        wait_css(&c, "svg.history-chart[data-claim='files-0'][data-series='drills'] circle").await;

        // Scale out to 3 (no confirmation), then in to 2 (confirmed).
        c.goto(&format!("{admin}/console#/services/files")).await.unwrap();
        for (count, destructive) in [(3, false), (2, true)] {
            let input = wait_css(&c, "#scale-count").await;
            input.clear().await.unwrap();
            input.send_keys(&count.to_string()).await.unwrap();
            c.find(Locator::Css("button[data-action='scale']")).await.unwrap().click().await.unwrap();
            if destructive {
                confirm(&c).await;
            }
            site.wait_until(&format!("the service scaled to {count}"), || {
                (desired_count(&site)? == count).then_some(())
            });
        }

        // A file uploaded in the browser comes back byte for byte.
        let files = random_files("console", &[300 * 1024]);
        let (name, bytes) = files.iter().next().unwrap();
        let upload = site.dir.path().join(name);
        std::fs::write(&upload, bytes).unwrap();
        c.goto(&format!("{admin}/console#/files/files")).await.unwrap();
        wait_css(&c, "#upload-file").await.send_keys(upload.to_str().unwrap()).await.unwrap();
        c.find(Locator::Css("button[data-action='upload']")).await.unwrap().click().await.unwrap();
        wait_css(&c, &format!("tr[data-file='{name}']")).await;
        let downloaded = run(
            &c,
            "const a = document.querySelector(`a[data-download=\"${arguments[0]}\"]`);
             return fetch(a.href, {credentials: 'same-origin'}).then((r) => r.arrayBuffer()).then((b) => {
               const u = new Uint8Array(b); let s = '';
               for (let i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);
               return btoa(s);
             });",
            vec![json!(name)],
        )
        .await;
        let downloaded = base64::engine::general_purpose::STANDARD.decode(downloaded.as_str().unwrap()).unwrap();
        assert!(downloaded == *bytes, "the download differs from the upload ({} bytes)", downloaded.len());

        // An action without the session's CSRF token, or with another, is
        // refused, and changes nothing; a read needs none.
        for header in [json!({}), json!({ "X-Berth-Csrf": "forged" })] {
            let status = run(
                &c,
                "return fetch('/v1/services/files/scale', {method: 'POST', credentials: 'same-origin',
                   headers: Object.assign({'Content-Type': 'application/json'}, arguments[0]),
                   body: JSON.stringify({count: 4})}).then((r) => r.status);",
                vec![header.clone()],
            )
            .await;
            assert_eq!(status, json!(403), "a forged action ({header}) is refused");
        }
        let read =
            run(&c, "return fetch('/v1/claims', {credentials: 'same-origin'}).then((r) => r.status);", vec![]).await;
        assert_eq!(read, json!(200));
        assert_eq!(desired_count(&site), Some(2), "a refused action changed nothing");

        // At a phone's width no page scrolls sideways (tables scroll
        // inside their wrappers, the nav and forms wrap).
        let link = site.json(&["console"])["url"].as_str().unwrap().to_owned();
        let phone = browser(&driver, true).await;
        phone.goto(&link).await.unwrap();
        wait_css(&phone, "#nav").await;
        for (page, ready) in [
            ("#/", "table#services"),
            ("#/claims", "tr[data-claim='files-1']"),
            ("#/claims/files-0", "#generations tr[data-generation='2']"),
            ("#/backups", "section.history[data-claim='files-0']"),
            ("#/files/files", "table#files"),
        ] {
            phone.goto(&format!("{admin}/console{page}")).await.unwrap();
            wait_css(&phone, ready).await;
            let widths = run(&phone, "return [document.documentElement.scrollWidth, window.innerWidth];", vec![]).await;
            assert_eq!(widths[1], json!(375), "the phone's viewport");
            assert!(widths[0].as_u64() <= widths[1].as_u64(), "{page} scrolls sideways at 375 px: {widths}");
        }
        phone.close().await.unwrap();

        // A one-time login link works once.
        let link = site.json(&["console"])["url"].as_str().unwrap().to_owned();
        c.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
        wait_css(&c, "#token").await;
        c.goto(&link).await.unwrap();
        wait_css(&c, "#nav").await;
        c.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
        wait_css(&c, "#token").await;
        c.goto(&link).await.unwrap();
        let error = wait_css(&c, ".login-error").await.text().await.unwrap();
        assert!(error.contains("used already or has expired"), "{error}");
        c.close().await.unwrap();
    });
}
