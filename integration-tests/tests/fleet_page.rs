//! The fleet page (`/_miroir/ui`, issue 26) in a real browser: headless Chromium from
//! Debian's packages, driven over WebDriver (`chromedriver`, with `fantoccini`), against a
//! fleet of real Meilisearch nodes. It signs in through the form, compares the nodes and
//! the shard map the page shows with what the control plane says, watches a drain's
//! progress move, checks both widths, and keeps screenshots for the docs.

use crate::gateway_indexes::fleet_in_groups;
use fantoccini::{Client, ClientBuilder, Locator};
use miroir_integration_tests::{ControlPlaneOptions, MASTER_KEY, Meili, free_port, wait_for};
use miroir_proto::pb;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

/// `chromedriver` and the Chromium it drives, on a loopback port, with a fresh profile.
/// Both run in a process group of their own, killed whole on drop: killing chromedriver
/// alone leaves its Chromium running.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            // SAFETY: kill(2) on the process group this handle's child leads.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
    }
}

fn program(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found (set {env}); install Debian's `chromium` and `chromium-driver`",
        path.display()
    );
    path
}

impl Browser {
    async fn start() -> Self {
        let driver_bin = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = program("CHROMIUM_BIN", "/usr/bin/chromium");
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        wait_for("chromedriver", Duration::from_secs(20), || async {
            reqwest::get(&status)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        // As root in a sandbox without a network: no sandbox, no GPU, and none of the
        // background connections a closed network refuses.
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a WebDriver session in headless Chromium");
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Runs `script` (a function body that returns JSON) in the page.
    async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns something other than `null`, and returns it.
    async fn wait_value(&self, what: &str, script: &str) -> Value {
        wait_for(what, Duration::from_secs(30), || async {
            Some(self.eval(script).await).filter(|v| !v.is_null())
        })
        .await
    }

    /// Types `key` into the page's sign-in form and submits it.
    async fn sign_in(&self, key: &str) {
        let field = self
            .client
            .wait()
            .for_element(Locator::Css("#key"))
            .await
            .expect("the sign-in form");
        field.send_keys(key).await.unwrap();
        self.client
            .find(Locator::Css("#login button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-page");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, &png).unwrap();
        // `MIROIR_DOCS_SCREENSHOTS=docs/images` refreshes the ones the docs show.
        if let Some(docs) = std::env::var_os("MIROIR_DOCS_SCREENSHOTS") {
            std::fs::write(Path::new(&docs).join(name), &png).unwrap();
        }
        path
    }
}

/// What the page's nodes table shows: node → state.
const PAGE_NODES: &str = r#"
    const rows = [...document.querySelectorAll('#nodes tbody tr')];
    if (rows.length === 0) return null;
    return Object.fromEntries(rows.map(r => [r.dataset.node, r.querySelector('[data-field=state]').textContent]));
"#;

/// What the page's shard map shows: "index/group/shard" → read nodes.
const PAGE_SHARD_MAP: &str = r#"
    const cells = [...document.querySelectorAll('#shard-map td[data-shard]')];
    return Object.fromEntries(cells.map(c => [`${c.dataset.index}/${c.dataset.group}/${c.dataset.shard}`, c.dataset.nodes]));
"#;

fn shard_map(topology: &pb::Topology) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for index in &topology.indexes {
        for group in &index.routing {
            for shard in &group.shards {
                map.insert(
                    format!("{}/{}/{}", index.uid, group.group_id, shard.shard),
                    shard.read_nodes.join(","),
                );
            }
        }
    }
    map
}

/// Waits until the page's shard map and node states are the control plane's.
async fn page_matches_control_plane(
    browser: &Browser,
    cp: &miroir_integration_tests::ControlPlane,
) {
    wait_for(
        "the page to show the control plane's shard map and node states",
        Duration::from_secs(30),
        || async {
            let topology = cp.current_topology().await;
            let expected_map = shard_map(&topology);
            let expected_nodes: BTreeMap<String, String> = topology
                .nodes
                .iter()
                .map(|n| (n.id.clone(), n.state().short_name().to_owned()))
                .collect();
            let page_map: BTreeMap<String, String> =
                serde_json::from_value(browser.eval(PAGE_SHARD_MAP).await).ok()?;
            let page_nodes: BTreeMap<String, String> =
                serde_json::from_value(browser.eval(PAGE_NODES).await).ok()?;
            (page_map == expected_map && page_nodes == expected_nodes && !page_map.is_empty())
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_fleet_page_shows_the_fleet_and_a_drain_moving() {
    // Two nodes in group 0 and one in group 1; moves one at a time, so that a drain of 8
    // shards shows several steps of progress.
    let mut options = ControlPlaneOptions::default();
    options
        .extra_args
        .extend(["--move-concurrency", "1"].map(String::from));
    let (_dir, cp, _nodes, gateway) = fleet_in_groups(&[0, 0, 1], options).await;
    let meili = Meili::new(&gateway.url);
    meili
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "movies", "primaryKey": "id", "miroirShardCount": 16}),
        )
        .await;
    let documents: Vec<Value> = (0..20_000)
        .map(|i| json!({"id": i, "title": format!("movie {i}"), "year": 1950 + i % 70}))
        .collect();
    for chunk in documents.chunks(5_000) {
        meili
            .ok(Method::POST, "/indexes/movies/documents", json!(chunk))
            .await;
    }
    // A failed task for the page's "recent failures".
    let (status, task) = meili.delete("/indexes/no-such-index").await;
    assert_eq!(status, 202, "{task}");
    let failed = meili.wait_task(&task).await;
    assert_eq!(failed["status"], "failed", "{failed}");

    // Searches, so that the page shows each node's latency as this gateway sees it.
    for i in 0..40 {
        let (status, _) = meili
            .post(
                "/indexes/movies/search",
                json!({ "q": format!("movie {i}") }),
            )
            .await;
        assert_eq!(status, 200);
    }
    let browser = Browser::start().await;
    let client = &browser.client;
    client
        .goto(&format!("{}/_miroir/ui", gateway.url))
        .await
        .expect("open the page");

    // Sign in: a wrong key is refused with Meilisearch's message, the master key shows
    // the fleet.
    browser.sign_in("not-the-key").await;
    let refused = browser
        .wait_value(
            "the refusal",
            "const t = document.querySelector('#login-error').textContent; return t || null;",
        )
        .await;
    assert!(refused.as_str().unwrap().contains("invalid"), "{refused}");
    browser.sign_in(MASTER_KEY).await;
    page_matches_control_plane(&browser, &cp).await;
    assert_eq!(
        browser
            .eval("return sessionStorage.getItem('miroir.fleet.key')")
            .await,
        MASTER_KEY,
        "the key is kept in the browser's session storage"
    );

    // Gateways with their applied version, settings versions, and the failed task.
    let version = cp.current_topology().await.version;
    browser
        .wait_value(
            "this gateway with its applied version",
            &format!(
                "const r = document.querySelector('#gateways tbody tr'); \
                 return r && r.children[1].textContent === '{version}' ? true : null;"
            ),
        )
        .await;
    let failure = browser
        .wait_value(
            "the failed task among recent failures",
            &format!(
                "const r = document.querySelector('#tasks tr[data-task=\"{}\"]'); return r ? r.textContent : null;",
                failed["uid"]
            ),
        )
        .await;
    assert!(
        failure.as_str().unwrap().contains("index_not_found"),
        "{failure}"
    );
    let settings = browser
        .eval("return document.querySelector('#settings tr[data-index=movies]').textContent")
        .await;
    assert!(
        settings.as_str().unwrap().starts_with("movies"),
        "{settings}"
    );
    // Tall enough for every section in one picture.
    client.set_window_size(1280, 2200).await.unwrap();
    let full = browser.screenshot("fleet-page-1280.png").await;
    client.set_window_size(1280, 1000).await.unwrap();

    // A drain: the operation shows, its progress moves, and it finishes.
    let drain = cp
        .admin()
        .await
        .drain_node(pb::DrainNodeRequest {
            id: "meili-1".into(),
        })
        .await
        .expect("drain")
        .into_inner()
        .operation_id
        .expect("an operation");
    let progress_script = format!(
        "const op = document.querySelector('#operations [data-operation=\"{drain}\"]'); \
         if (!op) return null; \
         const copying = [...document.querySelectorAll('#shard-map td.moving')].length; \
         return [op.dataset.state, op.querySelector('[data-field=progress]').textContent, copying];"
    );
    let mut seen: Vec<String> = Vec::new();
    let mut saw_a_move_on_the_map = false;
    let mut shot_a_move = false;
    let finished = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let value = browser.eval(&progress_script).await;
        if let Some([state, progress, moving]) = value.as_array().map(Vec::as_slice) {
            let progress = progress.as_str().unwrap().to_owned();
            if seen.last() != Some(&progress) {
                seen.push(progress);
            }
            if moving.as_u64().unwrap_or(0) > 0 {
                saw_a_move_on_the_map = true;
                if !shot_a_move {
                    browser.screenshot("fleet-page-drain-1280.png").await;
                    shot_a_move = true;
                }
            }
            if state == "succeeded" {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < finished,
            "the drain did not finish on the page; progress seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.len() >= 3,
        "the page showed the drain's progress move (at least a start, a step and the end): {seen:?}"
    );
    assert!(
        seen.last()
            .unwrap()
            .trim_start()
            .starts_with("8 of 8 moves"),
        "{seen:?}"
    );
    assert!(
        saw_a_move_on_the_map,
        "a moving shard showed on the shard map"
    );
    // After it: the drained node is `draining` and holds nothing, as the control plane says.
    page_matches_control_plane(&browser, &cp).await;
    assert_eq!(
        browser
            .eval("return document.querySelector('#poll-error').hidden")
            .await,
        true,
        "no update failed"
    );
    let copies = browser
        .eval("return document.querySelector('#nodes tr[data-node=\"meili-1\"] [data-field=copies]').textContent")
        .await;
    assert_eq!(copies, "0");

    // An index's shard map the operator closed stays closed when the map is redrawn (a
    // new index changes it).
    client
        .find(Locator::Css(
            "#shard-map details[data-index=movies] > summary",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    meili.create_index("books").await;
    browser
        .wait_value(
            "the new index on the shard map",
            "return document.querySelector('#shard-map details[data-index=books]') ? true : null;",
        )
        .await;
    assert_eq!(
        browser
            .eval("return document.querySelector('#shard-map details[data-index=movies]').open")
            .await,
        false,
        "the closed shard map stays closed"
    );

    // A phone's width: nothing wider than the screen (wide tables scroll in their card).
    client.set_window_size(390, 844).await.unwrap();
    let fits = browser
        .wait_value(
            "the page at 390 px",
            "return window.innerWidth <= 400 ? [document.documentElement.scrollWidth, window.innerWidth] : null;",
        )
        .await;
    assert!(
        fits[0].as_u64() <= fits[1].as_u64(),
        "the page is wider than the screen: {fits}"
    );
    let narrow = browser.screenshot("fleet-page-390.png").await;
    eprintln!(
        "screenshots: {} {} (and the drain's beside them)",
        full.display(),
        narrow.display()
    );

    // Signing out forgets the key.
    client.set_window_size(1280, 1000).await.unwrap();
    client
        .find(Locator::Css("#sign-out"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        browser
            .eval("return sessionStorage.getItem('miroir.fleet.key')")
            .await,
        Value::Null
    );
}

#[tokio::test]
async fn the_fleet_data_needs_an_admin_key_and_outlives_the_control_plane() {
    let (_dir, mut cp, _nodes, gateway) =
        fleet_in_groups(&[0], ControlPlaneOptions::default()).await;
    let meili = Meili::new(&gateway.url);
    let url = format!("{}/_miroir/ui/fleet", gateway.url);
    let http = reqwest::Client::new();
    let answer = http.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["code"], "missing_authorization_header");
    // A search key may not see the fleet; an admin key may.
    let (_, search_key) = meili
        .post(
            "/keys",
            json!({"actions": ["search"], "indexes": ["*"], "expiresAt": null}),
        )
        .await;
    let (_, admin_key) = meili
        .post(
            "/keys",
            json!({"actions": ["*"], "indexes": ["*"], "expiresAt": null}),
        )
        .await;
    let status_with = |key: Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            wait_for(
                "the key at the gateway",
                Duration::from_secs(10),
                || async {
                    let status = http
                        .get(&url)
                        .bearer_auth(key["key"].as_str().unwrap())
                        .send()
                        .await
                        .ok()?
                        .status();
                    // A key just created reaches the gateway with the next topology.
                    (status != 403 || key["actions"] == json!(["search"])).then_some(status)
                },
            )
            .await
        }
    };
    assert_eq!(status_with(search_key).await, 403);
    assert_eq!(status_with(admin_key).await, 200);
    // The page itself is public (it holds no data) and locked down.
    let page = http
        .get(format!("{}/_miroir/ui", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    // Without a control plane the page still shows the topology the gateway follows,
    // and says why the rest is missing.
    cp.kill().await;
    let answer = http.get(&url).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let fleet: Value = answer.json().await.unwrap();
    assert_eq!(fleet["controlPlane"]["reachable"], false, "{fleet}");
    assert!(fleet["controlPlane"]["error"].as_str().is_some(), "{fleet}");
    assert_eq!(fleet["nodes"][0]["id"], "meili-0");
    assert_eq!(fleet["nodes"][0]["state"], "active");
}
