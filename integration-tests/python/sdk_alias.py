"""The official Python SDK (`meilisearch`) using an index alias as its index uid.

Usage: python3 sdk_alias.py URL MASTER_KEY ALIAS
The alias must name an index with primary key `id`. Exits non-zero with the failing
assertion on any difference.
"""
import sys

import meilisearch


def main(url: str, key: str, alias: str) -> None:
    client = meilisearch.Client(url, key)
    index = client.index(alias)

    task = index.update_settings({"filterableAttributes": ["genre", "lang"]})
    assert client.wait_for_task(task.task_uid, timeout_in_ms=20000).status == "succeeded"
    assert index.get_filterable_attributes() == ["genre", "lang"], index.get_filterable_attributes()

    task = index.add_documents([{"id": 500 + i, "title": f"python {i}", "lang": "py"} for i in range(5)])
    task = client.wait_for_task(task.task_uid, timeout_in_ms=20000)
    assert task.status == "succeeded", task
    assert task.details["indexedDocuments"] == 5, task.details

    result = index.search("", {"filter": "lang = py", "limit": 10})
    assert sorted(hit["id"] for hit in result["hits"]) == list(range(500, 505)), result
    assert index.get_document(502).title == "python 2"

    tasks = client.get_tasks({"indexUids": [alias], "limit": 50})
    assert len(tasks.results) >= 2, tasks.results

    result = client.multi_search([{"indexUid": alias, "q": "python", "filter": "lang = py"}])
    assert result["results"][0]["indexUid"] == alias, result
    assert len(result["results"][0]["hits"]) == 5, result

    task = index.delete_documents(filter="lang = py")
    assert client.wait_for_task(task.task_uid, timeout_in_ms=20000).status == "succeeded"
    assert index.search("", {"filter": "lang = py"})["hits"] == []
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
