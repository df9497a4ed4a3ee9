//! The result cache is never stale: under writers on two gateways (real nodes, Redis), a
//! search made after a write's task succeeded never answers from before it, though the
//! same searches are repeated all along (and so answered from the cache in between).

use miroir_integration_tests::{Gateway, Meili, RedisServer};
use reqwest::Method;
use serde_json::{Value, json};

const INDEX: &str = "cached";
/// Writes per writer.
const ROUNDS: u64 = 25;

/// The value of `n` every search shows for document `id`: by filter, and in a list of
/// every document (two different cached answers).
async fn seen_values(gateway: &Meili, id: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    for body in [
        json!({"filter": format!("id = {id}")}),
        json!({"q": "", "sort": ["id:asc"], "limit": 50}),
    ] {
        let (status, answer) = gateway
            .post(&format!("/indexes/{INDEX}/search"), body)
            .await;
        assert_eq!(status, 200, "{answer}");
        let hit = answer["hits"]
            .as_array()
            .and_then(|hits| hits.iter().find(|h| h["id"] == id))
            .unwrap_or_else(|| panic!("document {id} missing: {answer}"));
        seen.push(hit["n"].as_u64().expect("n"));
    }
    // A multi-search too.
    let (status, answer) = gateway
        .post(
            "/multi-search",
            json!({"queries": [{"indexUid": INDEX, "filter": format!("id = {id}")}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    seen.push(answer["results"][0]["hits"][0]["n"].as_u64().expect("n"));
    seen
}

#[tokio::test]
async fn a_search_after_a_write_succeeded_never_answers_from_before_it() {
    let redis = RedisServer::start().await;
    let args = ["--redis-url", redis.url.as_str(), "--result-cache"];
    let (dir, cp, _nodes, first) = crate::gateway_indexes::fleet_with_gateway(3, &args).await;
    let second = Gateway::start(dir.path(), &cp.url(), &args).await;
    second.wait_writable().await;
    let gateways = [Meili::new(&first.url), Meili::new(&second.url)];
    gateways[0]
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": INDEX, "primaryKey": "id", "miroirShardCount": 4}),
        )
        .await;
    gateways[0]
        .ok(
            Method::PATCH,
            &format!("/indexes/{INDEX}/settings"),
            json!({"filterableAttributes": ["id"], "sortableAttributes": ["id"]}),
        )
        .await;
    let documents: Vec<Value> = (0..40).map(|id| json!({"id": id, "n": 0})).collect();
    gateways[0]
        .ok(
            Method::POST,
            &format!("/indexes/{INDEX}/documents"),
            json!(documents),
        )
        .await;
    second
        .wait_version(cp.current_topology().await.version)
        .await;

    // Two writers, one per gateway, each on its own document; each write's task is
    // awaited through the other gateway, then both gateways are searched.
    let writers: Vec<_> = (0..2usize)
        .map(|w| {
            let (mine, other) = (gateways[w].clone(), gateways[1 - w].clone());
            tokio::spawn(async move {
                let id = w as u64;
                for n in 1..=ROUNDS {
                    // Searched before the write too: the answers are in the caches.
                    for gateway in [&mine, &other] {
                        let before = seen_values(gateway, id).await;
                        assert!(
                            before.iter().all(|v| *v == n - 1),
                            "writer {w} before write {n}: {before:?}"
                        );
                    }
                    let (status, task) = mine
                        .json(
                            Method::PUT,
                            &format!("/indexes/{INDEX}/documents"),
                            json!([{"id": id, "n": n}]),
                        )
                        .await;
                    assert_eq!(status, 202, "{task}");
                    let task = other.wait_task(&task).await;
                    assert_eq!(task["status"], "succeeded", "{task}");
                    for gateway in [&other, &mine] {
                        let after = seen_values(gateway, id).await;
                        assert!(
                            after.iter().all(|v| *v == n),
                            "writer {w}: a search after write {n} succeeded saw {after:?}"
                        );
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    // The cache answered in between (else this test proves nothing).
    let mut hits = 0;
    for gateway in [&first, &second] {
        hits += gateway
            .counter("miroir_gateway_result_cache_hits_total")
            .await
            .expect("the result cache's metrics");
    }
    assert!(hits >= ROUNDS, "only {hits} answers came from the cache");

    // An answer larger than an entry may be passes through whole, twice.
    let large = "x".repeat(1_500_000);
    gateways[0]
        .ok(
            Method::POST,
            &format!("/indexes/{INDEX}/documents"),
            json!([{"id": 999, "n": 0, "text": large}]),
        )
        .await;
    // Searched until one went through the cache's path (not bypassed while the write's
    // mark was still being cleared), then once more.
    let misses = || second.counter("miroir_gateway_result_cache_misses_total");
    let before = misses().await.unwrap_or(0);
    let mut through_the_cache = 0;
    for _ in 0..100 {
        let (status, answer) = gateways[1]
            .post(
                &format!("/indexes/{INDEX}/search"),
                json!({"filter": "id = 999"}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["hits"][0]["text"].as_str().map(str::len),
            Some(1_500_000)
        );
        if misses().await.unwrap_or(0) > before {
            through_the_cache += 1;
            if through_the_cache == 2 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        through_the_cache, 2,
        "the large answer never reached the cache's path"
    );
}
