//! A real browser for the tests: Debian's Chromium, headless, driven over
//! WebDriver by chromedriver (one per test, on a free port), with axe-core
//! to check each page's accessibility and a screenshot of each page under
//! `target/screenshots/` for review.
//!
//! Outside CI a machine without Chromium skips these tests with a line
//! saying so; in CI (`CI=true`) that fails them instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use cloudkeep_testkit::{App, AppOptions, in_ci};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Two browsers at a time: each is a few processes, and the machine has
/// two cores.
static BROWSERS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(2)));

/// The axe-core the tests run, fetched from npm once into `target/axe`.
const AXE_VERSION: &str = "4.14.1";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace")
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn find(var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// How long a page may take to show what a test waits for: generous,
/// since CI runs the scenarios side by side on two cores.
const PATIENCE: Duration = Duration::from_secs(60);

/// A short pause before finding an element again after `_why`.
async fn pause_after(_why: &fantoccini::error::CmdError) {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// Skips (outside CI) or fails (in CI) for lack of `what`.
fn missing(what: &str) -> Option<Browser> {
    assert!(
        !in_ci(),
        "the browser tests need {what}; CI installs it (.ci/run)"
    );
    eprintln!("skipped: the browser tests need {what} (apt-get install chromium chromium-driver)");
    None
}

/// axe-core's source, installed with npm on first use: once for all the
/// tests of this binary (they start side by side, and one must not read
/// the file while another's npm writes it), into a directory of its own
/// that is renamed into place when complete.
async fn axe_source() -> Option<String> {
    static AXE: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();
    AXE.get_or_init(install_axe).await.clone()
}

async fn install_axe() -> Option<String> {
    let dir = target().join("axe");
    let file = dir.join("node_modules/axe-core/axe.min.js");
    if !file.exists() {
        let partial = target().join(format!("axe.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        let _ = std::fs::create_dir_all(&partial);
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&partial)
            .arg(format!("axe-core@{AXE_VERSION}"))
            .stdout(Stdio::null())
            .status()
            .await;
        if !matches!(status, Ok(s) if s.success()) {
            let _ = std::fs::remove_dir_all(&partial);
            assert!(!in_ci(), "npm could not install axe-core {AXE_VERSION}");
            eprintln!(
                "note: axe-core not installed (no npm?); pages are not checked for accessibility"
            );
            return None;
        }
        // Another binary's run may have put one there meanwhile: either
        // is whole.
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::rename(&partial, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
    }
    std::fs::read_to_string(file).ok()
}

pub struct Browser {
    pub client: Client,
    pub base: String,
    axe: Option<String>,
    _driver: Child,
    _permit: OwnedSemaphorePermit,
}

/// The app with the web UI, as the browser tests run it.
pub async fn app() -> App {
    app_with(AppOptions::default()).await
}

pub async fn app_with(mut options: AppOptions) -> App {
    options.pages = Some(cloudkeep_web::pages);
    cloudkeep_testkit::spawn_app_with(options).await
}

impl Browser {
    /// A headless Chromium at `app`'s URL; `None` (outside CI) when the
    /// machine has none.
    pub async fn open(app: &App) -> Option<Browser> {
        let Some(driver) = find(
            "CLOUDKEEP_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        ) else {
            return missing("chromedriver");
        };
        let Some(chromium) = find(
            "CLOUDKEEP_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        ) else {
            return missing("chromium");
        };
        let permit = BROWSERS.clone().acquire_owned().await.expect("semaphore");
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "browserName": "chrome",
            // The simulator's sign-in page is HTTPS with its own CA.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--lang=en-US",
                ],
            },
        }))
        .expect("capabilities");
        let url = format!("http://127.0.0.1:{port}");
        let mut last = String::new();
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Some(Browser {
                        client,
                        base: app.url.clone(),
                        axe: axe_source().await,
                        _driver: child,
                        _permit: permit,
                    });
                }
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("chromedriver did not start a session: {last}");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("goto {path}: {e}"));
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    pub async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let text = match self.client.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                // What the browser holds, when its text says too little.
                let html = self.client.source().await.unwrap_or_default();
                let main = html.find("<main").map_or(html.as_str(), |i| &html[i..]);
                let text = format!(
                    "{text}\n--- source from <main>: {}",
                    &main[..main.len().min(3000)]
                );
                panic!(
                    "waiting for {css} on {}: {e}; the page says: {text}",
                    self.path().await
                )
            }
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.wait(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        self.wait(css).await.click().await.expect("click");
    }

    pub async fn text(&self, css: &str) -> String {
        // The element can be replaced between finding and reading it (a
        // page loading, htmx swapping a fragment): find it again.
        let mut tries = 0;
        loop {
            match self.wait(css).await.text().await {
                Ok(text) => return text,
                Err(e) if tries < 20 => {
                    tries += 1;
                    pause_after(&e).await;
                }
                Err(e) => panic!("reading {css} on {}: {e}", self.base),
            }
        }
    }

    /// The page's visible text.
    pub async fn body(&self) -> String {
        self.text("body").await
    }

    /// Waits until the page's text contains `needle` (a page loading, a
    /// fragment swapped in by htmx, a run finishing).
    pub async fn wait_text(&self, needle: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            if let Ok(body) = self.client.find(Locator::Css("body")).await
                && let Ok(text) = body.text().await
                && text.contains(needle)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{:?} never appeared on {}; the page says: {}",
            needle,
            self.path().await,
            self.body().await
        );
    }

    /// Waits until the address holds `needle`: a form sent by GET, its
    /// page loading. (An element the old page shows too says nothing of
    /// whether the new one has come.)
    pub async fn wait_path(&self, needle: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            if self.path().await.contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the address never held {needle:?}: {}", self.path().await);
    }

    pub async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/login").await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("button[type=submit]").await;
        self.wait("nav.side").await;
    }

    /// Accepts the confirmation a form asks for before it submits.
    pub async fn confirm(&self) {
        for _ in 0..50 {
            if self.client.accept_alert().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no confirmation was asked");
    }

    /// A screenshot of the page, at `target/screenshots/{name}.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = target().join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshots dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Runs axe-core on the page and fails on any serious or critical
    /// violation, naming each with the elements it found.
    pub async fn accessible(&self, name: &str) {
        let Some(axe) = &self.axe else { return };
        self.client.execute(axe, vec![]).await.expect("axe loads");
        let found = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ["violations"] })
                  .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                      nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ")) }))))
                  .catch(e => done([{ id: "axe-error", impact: "critical", help: String(e), nodes: [] }]));"#,
                vec![],
            )
            .await
            .expect("axe runs");
        let bad: Vec<&Value> = found
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            bad.is_empty(),
            "{name} ({}) has serious or critical accessibility violations: {}",
            self.path().await,
            serde_json::to_string_pretty(&bad).unwrap_or_default()
        );
    }

    /// Both: a screenshot, then the accessibility check.
    pub async fn check_page(&self, name: &str) {
        self.shot(name).await;
        self.accessible(name).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
