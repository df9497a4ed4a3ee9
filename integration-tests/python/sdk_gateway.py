"""The official Python SDK (`meilisearch`) against a Miroir gateway.

Usage: python3 sdk_gateway.py URL MASTER_KEY
Exits non-zero with the failing assertion on any difference from Meilisearch's behaviour.
"""
import sys

import meilisearch


def main(url: str, key: str) -> None:
    client = meilisearch.Client(url, key)
    assert client.is_healthy()

    task = client.create_index("books", {"primaryKey": "id"})
    task = client.wait_for_task(task.task_uid, timeout_in_ms=20000)
    assert task.status == "succeeded", task

    index = client.get_index("books")
    assert index.uid == "books" and index.primary_key == "id", index

    documents = [
        {"id": i, "title": f"book {i}", "genre": ["fantasy", "history", "poetry"][i % 3], "year": 1990 + i}
        for i in range(30)
    ]
    task = index.update_settings({"filterableAttributes": ["genre", "year"], "sortableAttributes": ["year"]})
    assert client.wait_for_task(task.task_uid, timeout_in_ms=20000).status == "succeeded"
    assert index.get_filterable_attributes() == ["genre", "year"], index.get_filterable_attributes()
    settings = index.get_settings()
    assert settings["faceting"]["maxValuesPerFacet"] == 100, settings
    assert "_miroir_shard" not in settings["filterableAttributes"], settings
    task = index.update_faceting_settings({"maxValuesPerFacet": 2})
    assert client.wait_for_task(task.task_uid, timeout_in_ms=20000).status == "succeeded"
    assert index.get_faceting_settings().max_values_per_facet == 2, index.get_faceting_settings()

    task = index.add_documents(documents)
    task = client.wait_for_task(task.task_uid, timeout_in_ms=20000)
    assert task.status == "succeeded", task
    assert task.details["receivedDocuments"] == 30 and task.details["indexedDocuments"] == 30, task.details

    result = index.search("book", {"limit": 5})
    assert len(result["hits"]) == 5 and result["estimatedTotalHits"] == 30, result
    assert all("_miroir_shard" not in hit for hit in result["hits"]), result

    result = index.search("", {"filter": "genre = poetry AND year > 2000", "facets": ["genre"], "sort": ["year:desc"]})
    years = [hit["year"] for hit in result["hits"]]
    assert years == sorted(years, reverse=True) and all(y > 2000 for y in years), result
    assert result["facetDistribution"] == {"genre": {"poetry": len(years)}}, result

    document = index.get_document(7)
    assert document.title == "book 7", document

    task = index.delete_document(7)
    assert client.wait_for_task(task.task_uid, timeout_in_ms=20000).status == "succeeded"
    try:
        index.get_document(7)
        raise AssertionError("document 7 should be gone")
    except meilisearch.errors.MeilisearchApiError as error:
        assert error.code == "document_not_found", error

    page = index.get_documents({"limit": 10, "offset": 10})
    assert page.total == 29 and len(page.results) == 10, page

    try:
        client.get_index("missing")
        raise AssertionError("missing index should fail")
    except meilisearch.errors.MeilisearchApiError as error:
        assert error.code == "index_not_found" and error.status_code == 404, error

    tasks = client.get_tasks({"indexUids": ["books"], "limit": 3})
    assert len(tasks.results) == 3 and tasks.total == 5, tasks
    assert all(t.enqueued_at <= t.started_at for t in tasks.results), tasks
    assert client.get_version()["pkgVersion"], client.get_version()

    results = client.multi_search([
        {"indexUid": "books", "q": "", "filter": "genre = poetry", "limit": 2},
        {"indexUid": "books", "q": "book", "limit": 1},
    ])["results"]
    assert len(results) == 2 and len(results[0]["hits"]) == 2 and len(results[1]["hits"]) == 1, results
    assert all(hit["genre"] == "poetry" for hit in results[0]["hits"]), results

    # Federated, two queries on one index: each document once, the union counted and faceted.
    union = index.search("", {"filter": "genre IN [poetry, history]", "facets": ["genre"], "limit": 1000})
    federated = client.multi_search(
        [
            {"indexUid": "books", "q": "", "filter": "genre = poetry"},
            {"indexUid": "books", "q": "", "filter": "genre IN [poetry, history]"},
        ],
        federation={"limit": 100, "facetsByIndex": {"books": ["genre"]}},
    )
    ids = [hit["id"] for hit in federated["hits"]]
    assert len(ids) == len(set(ids)) == union["estimatedTotalHits"] == federated["estimatedTotalHits"], federated
    assert federated["facetsByIndex"]["books"]["distribution"] == union["facetDistribution"], federated

    # showPerformanceDetails, batches, dumps: what newer Meilisearch versions offer.
    timed = index.search("book", {"showPerformanceDetails": True})
    assert isinstance(timed["performanceDetails"].get("search"), str), timed
    batches = client.get_batches({"limit": 2})
    assert len(batches.results) == 2 and batches.total >= 5, batches
    newest = client.get_batch(batches.results[0].uid)
    assert newest.uid == batches.results[0].uid and newest.stats["totalNbTasks"] == 1, newest
    compaction = index.compact()
    done = client.wait_for_task(compaction.task_uid, timeout_in_ms=20000)
    assert done.status == "succeeded" and done.type == "indexCompaction", done
    dump = client.create_dump()
    done = client.wait_for_task(dump.task_uid, timeout_in_ms=20000)
    assert done.status == "succeeded" and done.type == "dumpCreation", done

    features = client.update_experimental_features({"containsFilter": True})
    assert features["containsFilter"] is True, features
    assert client.get_experimental_features()["containsFilter"] is True
    contains = index.search("", {"filter": "genre CONTAINS oetr", "limit": 100})
    assert contains["hits"] and all(h["genre"] == "poetry" for h in contains["hits"]), contains
    client.update_experimental_features({"containsFilter": False})

    stats = client.get_all_stats()
    assert stats["indexes"]["books"]["numberOfDocuments"] == 29, stats

    key = client.create_key({"description": "books search", "actions": ["search"], "indexes": ["books"], "expiresAt": None})
    assert key.key and key.uid and key.indexes == ["books"], key
    assert any(k.uid == key.uid for k in client.get_keys().results)
    token = client.generate_tenant_token(key.uid, {"books": {"filter": "genre = poetry"}}, api_key=key.key)
    tenant = meilisearch.Client(url, token)
    result = tenant.index("books").search("", {"limit": 100})
    assert result["hits"] and all(hit["genre"] == "poetry" for hit in result["hits"]), result
    try:
        meilisearch.Client(url, key.key).index("books").add_documents([{"id": 1000}])
        raise AssertionError("a search key may not write")
    except meilisearch.errors.MeilisearchApiError as error:
        assert error.code == "invalid_api_key" and error.status_code == 403, error
    client.delete_key(key.key)

    task = client.delete_index("books")
    assert client.wait_for_task(task.task_uid, timeout_in_ms=20000).status == "succeeded"
    print("python sdk: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
