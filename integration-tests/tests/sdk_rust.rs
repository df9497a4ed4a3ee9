//! The official Rust SDK (`meilisearch-sdk`), unchanged, against a Miroir fleet: index
//! lifecycle, settings, documents, search with filters, facets and sort, multi-search,
//! tasks, keys and tenant tokens, and errors, each typed by the SDK's own structs.

use crate::gateway_indexes::fleet;
use meilisearch_sdk::client::Client;
use meilisearch_sdk::errors::{Error, ErrorCode};
use meilisearch_sdk::key::{Action, KeyBuilder};
use meilisearch_sdk::search::{FederationOptions, SearchQuery, Selectors};
use meilisearch_sdk::settings::FacetingSettings;
use meilisearch_sdk::tasks::Task;
use miroir_integration_tests::MASTER_KEY;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Movie {
    id: u32,
    title: String,
    genre: String,
    year: u32,
}

fn movies() -> Vec<Movie> {
    (0..40)
        .map(|i| Movie {
            id: i,
            title: format!("movie {i}"),
            genre: ["horror", "comedy", "drama", "horror"][i as usize % 4].to_owned(),
            year: 1980 + i,
        })
        .collect()
}

fn succeeded(task: &Task) {
    assert!(matches!(task, Task::Succeeded { .. }), "{task:?}");
}

#[tokio::test]
async fn the_rust_sdk_works_unchanged() {
    let (_dir, _cp, _nodes, gateway) = fleet(3).await;
    let client = Client::new(&gateway.url, Some(MASTER_KEY)).unwrap();

    let task = client.create_index("movies", Some("id")).await.unwrap();
    let task = task.wait_for_completion(&client, None, None).await.unwrap();
    succeeded(&task);
    let index = task.try_make_index(&client).unwrap();
    for task in [
        index
            .set_filterable_attributes(["genre", "year"])
            .await
            .unwrap(),
        index.set_sortable_attributes(["year"]).await.unwrap(),
        index.add_documents(&movies(), Some("id")).await.unwrap(),
    ] {
        succeeded(&task.wait_for_completion(&client, None, None).await.unwrap());
    }

    let index = client.get_index("movies").await.unwrap();
    assert_eq!(index.primary_key.as_deref(), Some("id"));
    let found: Movie = index.get_document("7").await.unwrap();
    assert_eq!(found, movies()[7]);

    let results = index
        .search()
        .with_filter("genre = horror")
        .with_facets(Selectors::Some(&["genre", "year"]))
        .with_sort(&["year:desc"])
        .with_limit(5)
        .execute::<Movie>()
        .await
        .unwrap();
    assert_eq!(results.estimated_total_hits, Some(20));
    let years: Vec<u32> = results.hits.iter().map(|h| h.result.year).collect();
    assert_eq!(years, [2019, 2016, 2015, 2012, 2011]);
    let genres = &results.facet_distribution.unwrap()["genre"];
    assert_eq!(genres.get("horror"), Some(&20));

    let mut first = SearchQuery::new(&index);
    first
        .with_query("movie")
        .with_filter("genre = drama")
        .with_limit(3);
    let mut second = SearchQuery::new(&index);
    second.with_filter("year < 1990").with_limit(100);
    let multi = client
        .multi_search()
        .with_search_query(first)
        .with_search_query(second)
        .execute::<Movie>()
        .await
        .unwrap();
    assert_eq!(multi.results[0].estimated_total_hits, Some(10));
    assert_eq!(multi.results[1].hits.len(), 10);

    // Experimental features: set on every node; CONTAINS then filters on all of them.
    let mut features = meilisearch_sdk::features::ExperimentalFeatures::new(&client);
    features.set_contains_filter(true);
    assert!(features.update().await.unwrap().contains_filter);
    assert!(features.get().await.unwrap().contains_filter);
    let contains: meilisearch_sdk::search::SearchResults<Movie> = index
        .search()
        .with_filter("genre CONTAINS orro")
        .with_limit(100)
        .execute()
        .await
        .unwrap();
    assert!(!contains.hits.is_empty());
    assert!(contains.hits.iter().all(|h| h.result.genre == "horror"));

    // A dump and a snapshot: every node makes its own, under one task.
    let dump = client.create_dump().await.unwrap();
    let dump_uid = dump.task_uid;
    let done = dump.wait_for_completion(&client, None, None).await.unwrap();
    succeeded(&done);
    let meili = miroir_integration_tests::Meili::new(&gateway.url);
    let (_, view) = meili.get(&format!("/tasks/{dump_uid}")).await;
    assert_eq!(view["type"], "dumpCreation", "{view}");
    assert_eq!(
        view["details"]["miroirDumpUids"]
            .as_object()
            .map(|d| d.len()),
        Some(3),
        "{view}"
    );
    let snapshot = client.create_snapshot().await.unwrap();
    succeeded(
        &snapshot
            .wait_for_completion(&client, None, None)
            .await
            .unwrap(),
    );

    succeeded(
        &index
            .compact()
            .await
            .unwrap()
            .wait_for_completion(&client, None, None)
            .await
            .unwrap(),
    );

    // Batches: each started task is one.
    let batches = client.get_batches().await.unwrap();
    assert!(batches.total >= 2, "{batches:?}");
    let newest = &batches.results[0];
    assert!(newest.started_at.is_some(), "{newest:?}");
    let batch = client.get_batch(newest.uid).await.unwrap();
    assert_eq!(batch.uid, newest.uid);

    // `showPerformanceDetails` (Meilisearch ≥ 1.35), on a search and on a federation.
    let timed = index
        .search()
        .with_query("movie")
        .with_show_performance_details(true)
        .execute::<Movie>()
        .await
        .unwrap();
    let details = timed.performance_details.expect("performanceDetails");
    assert!(
        details.get("search").is_some_and(|d| d.is_string()),
        "{details}"
    );
    let mut alone = SearchQuery::new(&index);
    alone.with_query("movie");
    let mut query = client.multi_search();
    query.with_search_query(alone);
    let federated = query
        .with_federation(FederationOptions {
            show_performance_details: Some(true),
            ..Default::default()
        })
        .execute::<Movie>()
        .await
        .unwrap();
    assert!(federated.performance_details.is_some());

    // Settings through the SDK: its own values read back, Miroir's hidden ones never.
    assert_eq!(
        index.get_filterable_attributes().await.unwrap(),
        ["genre", "year"]
    );
    assert_eq!(
        index.get_faceting().await.unwrap().max_values_per_facet,
        100
    );
    let faceting = FacetingSettings {
        max_values_per_facet: 1,
        sort_facet_values_by: None,
    };
    succeeded(
        &index
            .set_faceting(&faceting)
            .await
            .unwrap()
            .wait_for_completion(&client, None, None)
            .await
            .unwrap(),
    );
    assert_eq!(index.get_faceting().await.unwrap().max_values_per_facet, 1);
    let results = index
        .search()
        .with_facets(Selectors::Some(&["genre"]))
        .execute::<Movie>()
        .await
        .unwrap();
    assert_eq!(results.facet_distribution.unwrap()["genre"].len(), 1);
    let settings = index.get_settings().await.unwrap();
    assert_eq!(settings.faceting.map(|f| f.max_values_per_facet), Some(1));

    let deleted = index.delete_document(7).await.unwrap();
    succeeded(
        &deleted
            .wait_for_completion(&client, None, None)
            .await
            .unwrap(),
    );
    match index.get_document::<Movie>("7").await {
        Err(Error::Meilisearch(error)) => assert_eq!(error.error_code, ErrorCode::DocumentNotFound),
        other => panic!("expected document_not_found, got {other:?}"),
    }
    match client.get_index("nope").await {
        Err(Error::Meilisearch(error)) => assert_eq!(error.error_code, ErrorCode::IndexNotFound),
        other => panic!("expected index_not_found, got {other:?}"),
    }

    let tasks = client.get_tasks().await.unwrap();
    assert!(tasks.results.len() >= 5, "{tasks:?}");
    let stats = client.get_stats().await.unwrap();
    assert_eq!(stats.indexes["movies"].number_of_documents, 39);
    client.get_version().await.unwrap();

    // A search key and a tenant token made by the SDK.
    let key = KeyBuilder::new()
        .with_action(Action::Search)
        .with_indexes(["movies"])
        .execute(&client)
        .await
        .unwrap();
    let token = client
        .generate_tenant_token(
            key.uid.clone(),
            json!({"movies": {"filter": "genre = comedy"}}),
            Some(&key.key),
            None,
        )
        .unwrap();
    let tenant = Client::new(&gateway.url, Some(token)).unwrap();
    let results = tenant
        .index("movies")
        .search()
        .with_limit(100)
        .execute::<Movie>()
        .await
        .unwrap();
    assert_eq!(results.hits.len(), 10);
    assert!(results.hits.iter().all(|h| h.result.genre == "comedy"));
    let searcher = Client::new(&gateway.url, Some(key.key.clone())).unwrap();
    match searcher
        .index("movies")
        .add_documents(&movies(), None)
        .await
    {
        Err(Error::Meilisearch(error)) => assert_eq!(error.error_code, ErrorCode::InvalidApiKey),
        other => panic!("a search key may not write: {other:?}"),
    }
    client.delete_key(key).await.unwrap();
}
