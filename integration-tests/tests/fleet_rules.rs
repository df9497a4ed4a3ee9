//! DESIGN §8 with many replicas: two control planes on real Postgres, three gateways, a
//! real Redis, and a client that picks a gateway at random for every request.

use miroir_integration_tests::{
    ControlPlane, ControlPlaneOptions, Gateway, MASTER_KEY, Meili, NodeKind, Postgres, RedisServer,
    TestNode, wait_for,
};
use miroir_proto::pb;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

struct Fleet {
    _postgres: Postgres,
    redis: Option<RedisServer>,
    dir: tempfile::TempDir,
    cps: Vec<ControlPlane>,
    nodes: Vec<TestNode>,
    gateways: Vec<Gateway>,
}

impl Fleet {
    /// Two control planes, two nodes of `kind`, three gateways (sharing Redis when
    /// `redis`), each with `gateway_args`.
    async fn start(redis: bool, gateway_args: &[&str], kind: NodeKind) -> Self {
        let redis = if redis {
            Some(RedisServer::start().await)
        } else {
            None
        };
        Self::start_with(redis, gateway_args, kind).await
    }

    /// Same, sharing `redis` when given.
    async fn start_with(redis: Option<RedisServer>, gateway_args: &[&str], kind: NodeKind) -> Self {
        let postgres = Postgres::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = ControlPlaneOptions::default();
        options
            .extra_args
            .extend(["--replicas", "2", "--leader-lease-ttl", "2s"].map(String::from));
        let mut cps = Vec::new();
        for _ in 0..2 {
            cps.push(ControlPlane::start(dir.path(), &postgres.url, &options).await);
        }
        let mut nodes = Vec::new();
        for i in 0..2 {
            let node = TestNode::start_kind(kind).await;
            // Through whichever replica: followers forward.
            cps[i % 2]
                .add_node(&format!("meili-{i}"), &node.url, 0)
                .await
                .expect("AddNode");
            nodes.push(node);
        }
        for i in 0..2 {
            cps[0]
                .wait_node_state(&format!("meili-{i}"), pb::NodeState::Active)
                .await;
        }
        let mut fleet = Self {
            _postgres: postgres,
            redis,
            dir,
            cps,
            nodes,
            gateways: Vec::new(),
        };
        for _ in 0..3 {
            fleet.add_gateway(gateway_args).await;
        }
        fleet
    }

    /// Starts one more gateway with `gateway_args` (and the fleet's Redis).
    async fn add_gateway(&mut self, gateway_args: &[&str]) -> &Gateway {
        let addresses = self
            .cps
            .iter()
            .map(|cp| cp.url())
            .collect::<Vec<_>>()
            .join(",");
        let mut args: Vec<String> = gateway_args.iter().map(|a| a.to_string()).collect();
        if let Some(redis) = &self.redis {
            args.extend(["--redis-url".to_owned(), redis.url.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let gateway = Gateway::start(self.dir.path(), &addresses, &args).await;
        gateway.wait_writable().await;
        self.gateways.push(gateway);
        &self.gateways[self.gateways.len() - 1]
    }

    /// A client for a gateway chosen at random.
    fn any(&self) -> Meili {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0) as usize;
        Meili::new(&self.gateways[nanos % self.gateways.len()].url)
    }

    /// Creates index `books` (primary key `id`) through any gateway.
    async fn create_books(&self) {
        self.any()
            .ok(
                Method::POST,
                "/indexes",
                json!({"uid": "books", "primaryKey": "id"}),
            )
            .await;
    }

    fn gateway(&self, i: usize) -> &Gateway {
        &self.gateways[i]
    }
}

/// A request with extra headers: status, headers' values asked for, JSON body.
async fn send(
    url: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(MASTER_KEY);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_fleet_rules_hold_whichever_gateway_answers() {
    // Test nodes: a read-your-writes session is checked while nodes hold tasks (an
    // injected delay), so that the read has to wait.
    let fleet = Fleet::start(true, &[], NodeKind::TestNode).await;
    let status = fleet.gateway(0).status().await;
    assert_eq!(status["coordination"]["mode"], "redis", "{status}");

    // A task created through one gateway is visible, with its status, on all others.
    let (code, enqueued) = fleet
        .any()
        .json(
            Method::POST,
            "/indexes",
            json!({"uid": "books", "primaryKey": "id"}),
        )
        .await;
    assert_eq!(code, 202, "{enqueued}");
    let uid = enqueued["taskUid"].as_u64().expect("taskUid");
    for gateway in &fleet.gateways {
        let task = Meili::new(&gateway.url).wait_task(&enqueued).await;
        assert_eq!(
            (task["uid"].as_u64(), task["status"].as_str()),
            (Some(uid), Some("succeeded"))
        );
    }

    // An idempotency key: the same write through two gateways is one task; a different
    // body through a third is refused.
    let write = json!([{"id": 1, "title": "Dune"}]);
    let key = [("Idempotency-Key", "import-1")];
    let (first, _, a) = send(
        &fleet.gateway(0).url,
        Method::POST,
        "/indexes/books/documents",
        &key,
        Some(write.clone()),
    )
    .await;
    let (second, headers, b) = send(
        &fleet.gateway(1).url,
        Method::POST,
        "/indexes/books/documents",
        &key,
        Some(write.clone()),
    )
    .await;
    assert_eq!((first, second), (202, 202));
    assert_eq!(a["taskUid"], b["taskUid"], "same key, same task");
    assert_eq!(
        headers.get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let (third, _, error) = send(
        &fleet.gateway(2).url,
        Method::POST,
        "/indexes/books/documents",
        &key,
        Some(json!([{"id": 2, "title": "Emma"}])),
    )
    .await;
    assert_eq!(
        (third, error["code"].as_str()),
        (409, Some("miroir_idempotency_key_reused"))
    );
    Meili::new(&fleet.gateway(2).url).wait_task(&a).await;

    // A read-your-writes session: nodes hold tasks for a while; a read in the session
    // through another gateway waits for the write and sees it.
    for node in &fleet.nodes {
        node.set_faults(json!({"taskDelayMs": 400})).await;
    }
    let session = [("X-Miroir-Session", "reader-42")];
    let (code, _, _) = send(
        &fleet.gateway(0).url,
        Method::POST,
        "/indexes/books/documents",
        &session,
        Some(json!([{"id": 3, "title": "Ulysses"}])),
    )
    .await;
    assert_eq!(code, 202);
    let (code, _, found) = send(
        &fleet.gateway(1).url,
        Method::GET,
        "/indexes/books/documents/3",
        &session,
        None,
    )
    .await;
    assert_eq!(
        (code, found["title"].as_str()),
        (200, Some("Ulysses")),
        "{found}"
    );
    for node in &fleet.nodes {
        node.set_faults(json!({})).await;
    }

    // Background jobs run on the leader only: the follower checks no node's health.
    for cp in &fleet.cps {
        let info = cp
            .admin()
            .await
            .get_leader(pb::GetLeaderRequest {})
            .await
            .expect("GetLeader")
            .into_inner();
        let metrics = cp.metrics_text().await;
        let checks: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("miroir_node_health_checks_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if info.is_self {
            assert!(checks > 0.0, "the leader checks nodes");
        } else {
            assert_eq!(checks, 0.0, "a follower runs no health checks");
        }
    }

    // A revoked key stops working on every gateway.
    let (code, created) = fleet
        .any()
        .post(
            "/keys",
            json!({"actions": ["search"], "indexes": ["books"], "expiresAt": null}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let value = created["key"].as_str().expect("key").to_owned();
    let search = |url: String, value: String| async move {
        reqwest::Client::new()
            .post(format!("{url}/indexes/books/search"))
            .bearer_auth(value)
            .json(&json!({"q": ""}))
            .send()
            .await
            .expect("search")
            .status()
            .as_u16()
    };
    for gateway in &fleet.gateways {
        wait_for("the key on every gateway", Duration::from_secs(10), || {
            let (url, value) = (gateway.url.clone(), value.clone());
            async move { (search(url, value).await == 200).then_some(()) }
        })
        .await;
    }
    let (code, _) = fleet
        .any()
        .delete(&format!(
            "/keys/{}",
            created["uid"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(code, 204);
    for gateway in &fleet.gateways {
        wait_for(
            "the revocation on every gateway",
            Duration::from_secs(10),
            || {
                let (url, value) = (gateway.url.clone(), value.clone());
                async move { (search(url, value).await == 403).then_some(()) }
            },
        )
        .await;
    }
}

/// Sends `n` searches as fast as possible spread over the gateways; how many passed.
async fn burst(fleet: &Fleet, n: usize) -> (usize, usize) {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        let url = fleet.gateways[i % fleet.gateways.len()].url.clone();
        calls.spawn(async move {
            send(
                &url,
                Method::POST,
                "/indexes/books/search",
                &[],
                Some(json!({"q": ""})),
            )
            .await
            .0
        });
    }
    let (mut passed, mut limited) = (0, 0);
    while let Some(Ok(code)) = calls.join_next().await {
        match code {
            200 => passed += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (passed, limited)
}

#[tokio::test]
async fn rate_limits_hold_fleet_wide_with_and_without_redis() {
    for (redis, flag) in [
        (true, "--rate-limit-per-key"),
        (false, "--rate-limit-per-key"),
        (true, "--rate-limit-per-ip"),
    ] {
        let fleet = Fleet::start(redis, &[flag, "6"], NodeKind::Meilisearch).await;
        fleet.create_books().await;
        if !redis {
            // Each gateway learns the live gateway count from the control plane.
            for gateway in &fleet.gateways {
                wait_for(
                    "the live gateway count",
                    Duration::from_secs(15),
                    || async {
                        (gateway.status().await["coordination"]["liveGateways"] == 3).then_some(())
                    },
                )
                .await;
            }
        }
        // Let a fresh one-second window begin, then burst: the fleet lets at most 6 a
        // second through (12 if the burst straddles two windows).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(
            1000 - u64::from(now.subsec_millis()) + 20,
        ))
        .await;
        let (passed, limited) = burst(&fleet, 30).await;
        println!("redis {redis}, {flag}: {passed} passed, {limited} limited");
        assert!(
            (1..=12).contains(&passed),
            "redis {redis}, {flag}: {passed} passed"
        );
        assert!(limited >= 18, "redis {redis}, {flag}: {limited} limited");
    }
}

/// A search through `gateway`: its status and error code, and how long it took.
async fn timed_search(gateway: &Gateway) -> (u16, Value, Duration) {
    let started = std::time::Instant::now();
    let (code, _, body) = send(
        &gateway.url,
        Method::POST,
        "/indexes/books/search",
        &[],
        Some(json!({"q": ""})),
    )
    .await;
    (code, body["code"].clone(), started.elapsed())
}

#[tokio::test]
async fn while_redis_is_hung_or_down_requests_fall_back_and_never_wait_past_the_timeout() {
    // Redis with an ACL user (its default user off), so the gateways must log in as it.
    let redis = RedisServer::start_with_user("miroir", "s3cret-pass").await;
    assert!(redis.url.starts_with("redis://miroir:s3cret-pass@"));
    let args = ["--rate-limit-per-ip", "100000", "--redis-timeout", "200ms"];
    let mut fleet = Fleet::start_with(Some(redis), &args, NodeKind::Meilisearch).await;
    // A fourth gateway whose rate limits fail closed.
    let closed_args = [&args[..], &["--redis-unavailable-rate-limits", "closed"]].concat();
    fleet.add_gateway(&closed_args).await;
    let (open, closed) = (&fleet.gateways[0], &fleet.gateways[3]);
    fleet.create_books().await;

    // Shared while Redis answers: a key used on one gateway replays on another.
    let write = |url: &str, key: &'static str| {
        let url = url.to_owned();
        async move {
            send(
                &url,
                Method::POST,
                "/indexes/books/documents",
                &[("Idempotency-Key", key)],
                Some(json!([{"id": 1, "title": key}])),
            )
            .await
        }
    };
    let (code, _, first) = write(&open.url, "before").await;
    assert_eq!(code, 202, "{first}");
    let (code, headers, replay) = write(&fleet.gateways[1].url, "before").await;
    assert_eq!((code, &replay), (202, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(open.status().await["coordination"]["reachable"], true);

    // Hung (SIGSTOP): connections stay open, nothing answers. No request waits on Redis
    // past its 200 ms bound (and the backoff spares the next ones even that).
    fleet.redis.as_ref().unwrap().hang();
    for _ in 0..5 {
        let (code, error, took) = timed_search(open).await;
        assert_eq!(code, 200, "fail open: {error}");
        assert!(took < Duration::from_secs(2), "a search took {took:?}");
        let (code, error, took) = timed_search(closed).await;
        assert_eq!(
            (code, error.as_str()),
            (503, Some("miroir_rate_limit_unavailable"))
        );
        assert!(took < Duration::from_secs(2), "a search took {took:?}");
    }
    // Idempotency keys fall back to the gateway's own memory: they hold on that gateway.
    let (code, _, first) = write(&open.url, "during").await;
    assert_eq!(code, 202, "{first}");
    let (code, headers, replay) = write(&open.url, "during").await;
    assert_eq!((code, &replay), (202, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
    let text = open.metrics_text().await;
    assert!(text.contains("miroir_gateway_redis_reachable 0"), "{text}");
    let fallbacks = |text: &str, operation: &str| -> u64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "miroir_gateway_fleet_state_fallbacks_total{{operation=\"{operation}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(fallbacks(&text, "rate_limit") >= 5, "{text}");
    assert!(fallbacks(&text, "idempotency") >= 2, "{text}");
    let log = std::fs::read_to_string(&open.log).expect("gateway log");
    assert!(log.contains("Redis unreachable"), "{log}");

    // Down (kill -9), then back, empty, on the same port.
    let redis = fleet.redis.as_mut().unwrap();
    redis.unhang();
    redis.kill().await;
    let (code, _, _) = timed_search(open).await;
    assert_eq!(code, 200);
    let (code, error, _) = timed_search(closed).await;
    assert_eq!(
        (code, error.as_str()),
        (503, Some("miroir_rate_limit_unavailable"))
    );
    fleet.redis.as_mut().unwrap().restart().await;
    let closed = &fleet.gateways[3];
    wait_for(
        "the closed gateway to count again",
        Duration::from_secs(20),
        || async { (timed_search(closed).await.0 == 200).then_some(()) },
    )
    .await;
    let open = &fleet.gateways[0];
    // Each gateway finds Redis back when its own backoff (at most 5 s) lets a request
    // probe it.
    for gateway in &fleet.gateways {
        wait_for(
            "Redis reachable from every gateway",
            Duration::from_secs(20),
            || async {
                timed_search(gateway).await;
                (gateway.status().await["coordination"]["reachable"] == true).then_some(())
            },
        )
        .await;
    }
    let log = std::fs::read_to_string(&open.log).expect("gateway log");
    assert!(log.contains("Redis reachable again"), "{log}");
    // Shared again.
    let (code, _, first) = write(&open.url, "after").await;
    assert_eq!(code, 202, "{first}");
    let (code, headers, replay) = write(&fleet.gateways[2].url, "after").await;
    assert_eq!((code, &replay), (202, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn gateways_share_state_through_a_tls_redis_signed_by_their_ca() {
    let redis = RedisServer::start_tls().await;
    assert!(redis.url.starts_with("rediss://"), "{}", redis.url);
    let ca = miroir_integration_tests::test_ca().display().to_string();
    let mut fleet = Fleet::start_with(
        Some(redis),
        &["--redis-ca-file", &ca, "--redis-timeout", "1s"],
        NodeKind::Meilisearch,
    )
    .await;
    // A fourth gateway trusting only the system's roots cannot verify the server.
    fleet.add_gateway(&["--redis-timeout", "1s"]).await;
    fleet.create_books().await;
    let write = |url: String| async move {
        send(
            &url,
            Method::POST,
            "/indexes/books/documents",
            &[("Idempotency-Key", "tls-1")],
            Some(json!([{"id": 1, "title": "over TLS"}])),
        )
        .await
    };
    let (code, _, first) = write(fleet.gateways[0].url.clone()).await;
    assert_eq!(code, 202, "{first}");
    let (code, headers, replay) = write(fleet.gateways[1].url.clone()).await;
    assert_eq!((code, &replay), (202, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(
        fleet.gateway(0).status().await["coordination"]["reachable"],
        true
    );
    // The one without the CA falls back to its memory: a new write, not a replay.
    let (code, headers, other) = write(fleet.gateways[3].url.clone()).await;
    assert_eq!(code, 202, "{other}");
    assert!(headers.get("idempotent-replayed").is_none(), "{other}");
    assert_eq!(
        fleet.gateway(3).status().await["coordination"]["reachable"],
        false
    );
}
